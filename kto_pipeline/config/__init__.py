"""Config: the one place the deployment settings and their environment variables are named and read."""
