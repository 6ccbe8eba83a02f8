"""Serving backends behind one small interface (`base.Backend`); adding a backend means adding one module."""
