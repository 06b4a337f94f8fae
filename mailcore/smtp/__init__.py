"""SMTP: the MX server for our domains (port 25) and the submission server for our users (587, 465).

aiosmtpd is the protocol engine (`server.py` adapts it); our policy lives in
`handlers.py` (MX and submission), `auth.py`, `submission.py` and `inbound.py`.
"""
