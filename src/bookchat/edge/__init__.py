"""The HTTP edge: middleware (CORS, security headers, proxies, body limits), problem+json, pagination cursors."""
