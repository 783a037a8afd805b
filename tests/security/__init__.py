"""Attacks on the gateway and the tests that keep them answered (issue 12): hostile clients,
hostile upstreams, hostile headers and bodies. Each module names the defect class it guards."""
