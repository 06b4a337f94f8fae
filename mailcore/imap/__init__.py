"""The IMAP server (RFC 3501 IMAP4rev1, RFC 9051 IMAP4rev2): parser, session state machine, command families."""
