"""The app registry: syncing SDK apps and reading their functions."""
