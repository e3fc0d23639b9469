"""Notebook widgets: views over plain ``workbench`` objects (see STYLE.md "Widgets")."""
