"""The compose deployment run for real: a Docker engine (found or started), the images (self-built where the
registry can't be reached), and `python -m stack.compose e2e`, which brings the stack up in containers and checks
it from the outside (`make compose-e2e`)."""
