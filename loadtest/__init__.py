"""Load tests (locust) across both backends, direct and through the gateway, and the comparison report."""
