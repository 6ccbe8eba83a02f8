"""Driving load: the lean closed-loop and open-loop client, and locust."""
