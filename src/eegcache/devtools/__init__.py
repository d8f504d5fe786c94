"""Development tools: the demo corpus and the local S3 server with its security. Only the CLI imports them; they
are not added to the Modal image."""
