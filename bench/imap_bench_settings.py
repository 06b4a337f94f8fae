"""Settings for bench/imap.py's server process: the project's settings with a fast password hash.

A thousand IDLE logins with the production PBKDF2 cost would measure hashing,
not IMAP; Dovecot in the same run checks plain-text passwords, so this keeps
the comparison about the protocol server.
"""
from config.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
