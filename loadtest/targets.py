"""Target names (as in reports) -> locust user class names and URL paths.

Kept apart from the locustfile: importing locust monkey-patches the process with gevent, which only locust's own
processes may have."""

TARGETS = {
    "tf-direct": "TFServingDirect",
    "torch-direct": "TorchServeDirect",
    "gateway-tf": "GatewayTF",
    "gateway-torch": "GatewayTorch",
    "gateway-compare": "GatewayCompare",
}

# Where each target is asked, relative to its server's base URL ({model}: the model name).
PATHS = {
    "tf-direct": "/v1/models/{model}:predict",
    "torch-direct": "/predictions/{model}",
    "gateway-tf": "/predict/tf",
    "gateway-torch": "/predict/torch",
    "gateway-compare": "/compare",
}
