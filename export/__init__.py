"""Train the 64-64-10 digits MLP and export it for TF Serving (SavedModel) and TorchServe (.mar)."""
