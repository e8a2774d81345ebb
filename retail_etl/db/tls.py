"""TLS for the local cluster: a private certificate authority made at `db up`, and a server
certificate it signs for the loopback names (localhost, 127.0.0.1, ::1).

The authority's key is thrown away once it has signed: nobody can mint another certificate
it vouches for. Clients verify the server against the authority's certificate (root.crt):
the local cluster's DSNs say `sslmode=verify-full&sslrootcert=.../root.crt`. A real server
has its own certificates; point `sslrootcert` at its authority the same way."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

HOSTS = ["localhost", "127.0.0.1", "::1"]
VALID_DAYS = 3650


def make(directory: Path) -> None:
    """root.crt (the authority), server.crt and server.key in `directory`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)  # (clocks that lag a little)
    until = now + dt.timedelta(days=VALID_DAYS)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "retail-etl local cluster"),
                          x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("retail-etl local authority"))
          .issuer_name(name("retail-etl local authority")).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(until)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                         critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
          .sign(ca_key, hashes.SHA256()))
    alt = [x509.DNSName(h) if not _is_ip(h) else x509.IPAddress(ipaddress.ip_address(h))
           for h in HOSTS]
    server = (x509.CertificateBuilder().subject_name(name("localhost")).issuer_name(ca.subject)
              .public_key(key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now).not_valid_after(until)
              .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
              .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False,
                                           False), critical=True)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
              .add_extension(x509.SubjectAlternativeName(alt), critical=False)
              .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                  ca_key.public_key()), False)
              .sign(ca_key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    (directory / "root.crt").write_bytes(ca.public_bytes(pem))
    (directory / "server.crt").write_bytes(server.public_bytes(pem))
    key_file = directory / "server.key"
    key_file.touch(mode=0o600)
    key_file.chmod(0o600)  # the server refuses a key others may read
    key_file.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False
