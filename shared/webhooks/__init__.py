"""Signed webhooks: the body, the signature, the SSRF guard and the sender."""
