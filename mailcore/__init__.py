"""The post office: mailbox store, address directory, protocol servers and delivery (no HTTP views)."""
