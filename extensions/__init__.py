"""What runs in notebooks and hub services: widgets (dataset picker, scaler), the governed
catalogue, help requests. Each arrives with its own issue and builds on ``workbench``."""
