"""Password checks for every protocol and the webmail (one place), SASL and login throttling."""
from mailcore.auth.passwords import AuthenticatedUser, check_login

__all__ = ["AuthenticatedUser", "check_login"]
