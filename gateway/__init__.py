"""The gateway: one front door that routes REST predictions to TF Serving or TorchServe."""
