"""A throwaway certificate authority and a `localhost` certificate for the fake's HTTPS."""

from __future__ import annotations

import ssl
from pathlib import Path

import trustme


def server_tls(data_dir: Path) -> tuple[ssl.SSLContext, Path]:
    """A server SSL context for localhost/127.0.0.1, and the path of the CA PEM clients trust."""
    authority = trustme.CA()
    certificate = authority.issue_cert("localhost", "127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(context)
    ca_file = data_dir / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    return context, ca_file
