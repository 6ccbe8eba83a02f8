"""Target names (as in reports) -> locust user class names. Kept apart from the locustfile: importing locust
monkey-patches the process with gevent, which only locust's own processes may have."""

TARGETS = {
    "tf-direct": "TFServingDirect",
    "torch-direct": "TorchServeDirect",
    "gateway-tf": "GatewayTF",
    "gateway-torch": "GatewayTorch",
    "gateway-compare": "GatewayCompare",
}
