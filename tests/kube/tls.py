"""A self-signed CA and the API server's serving certificate, for the emulator's TLS port.

An in-cluster client (the operator's kopf, the API's kubernetes client) reaches the API at
`https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT` and trusts only the CA in the
ServiceAccount's `ca.crt` (kubernetes client `config.load_incluster_config`; client-go
`rest.InClusterConfig`). client-go also sends a bearer token only over TLS
(kubernetes/kubectl#744), so with this port kubectl authenticates with a token like every
other identity. The serving certificate names what kube-apiserver's does: `kubernetes`,
`kubernetes.default`, `kubernetes.default.svc`, `kubernetes.default.svc.cluster.local`, and the
addresses it is reached at (kube-apiserver's --advertise-address and the Service's cluster IP).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

API_SERVER_NAMES = (
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "localhost",
)
VALIDITY = dt.timedelta(days=2)


@dataclasses.dataclass(frozen=True)
class ServingFiles:
    """Where the CA certificate (what a client trusts) and the server's key pair were written."""

    ca_cert: Path
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert, self.key)
        return context


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def write_serving_files(directory: Path, addresses: tuple[str, ...] = ("127.0.0.1",)) -> ServingFiles:
    """A new CA (`kubernetes-ca`, as kubeadm names it) and a serving certificate it signed for
    `addresses` and the API server's DNS names; the private keys are readable by root only."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)  # clock skew between processes
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("kubernetes-ca"))
        .issuer_name(_name("kubernetes-ca"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in API_SERVER_NAMES]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("kube-apiserver"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    files = ServingFiles(directory / "ca.crt", directory / "apiserver.crt", directory / "apiserver.key")
    files.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.touch(mode=0o600)
    files.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return files
