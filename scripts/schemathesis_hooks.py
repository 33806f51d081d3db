"""schemathesis hooks for scripts/schemathesis.sh: the NDJSON uploads (POST /api/v1/inventory,
POST /api/v1/contacts) are sent as the generated text."""

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")
