"""A TF-Serving-compatible server built on the real TensorFlow runtime.

It stands in for TensorFlow Serving where the `tensorflow_model_server` binary is missing (as on machines
with no Docker and no TF Serving package). It serves an exported SavedModel with TF Serving's REST API
(`/v1/models/...`, `instances`/`inputs`, `predictions`/`outputs`, model status, metadata, the `{"error": ...}`
shape and status codes) and its gRPC `PredictionService`. It is NOT TensorFlow Serving and says so in its
logs, its `Server` header and its metrics.
"""

SERVER_NAME = "servecompare-tfserving-compat"
DISPLAY_NAME = "TF-Serving-compatible server (TensorFlow runtime; not TensorFlow Serving)"
