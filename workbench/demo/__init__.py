"""The demo profile's own parts."""
