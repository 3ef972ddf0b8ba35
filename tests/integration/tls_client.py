"""TLS clients for the integration tests, on Python's ssl module (OpenSSL, not the server's
BoringSSL): a socket wrapped for a name the test CA certified, a PROXY header sent in plaintext
before the handshake, and the bytes of a real ClientHello for tests that send only part of one.

    from tls_client import connect, client_hello
    s = connect(port, "a.test", ca)                     # handshake done, hostname verified
    s = connect(port, "a.test", ca, before=b"PROXY TCP4 198.51.100.7 192.0.2.1 4000 443\\r\\n")
    hello = client_hello("a.test")                      # bytes of one ClientHello record
"""

import hashlib
import socket
import ssl
import time

HOST = "127.0.0.1"
VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def context(ca, min_version=None, max_version=None, alpn=None):
    """A client context that trusts only `ca` and checks the host name."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    if min_version:
        ctx.minimum_version = VERSIONS[min_version]
    if max_version:
        ctx.maximum_version = VERSIONS[max_version]
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def wrap(sock, name, ca, ctx=None, timeout=10):
    """Runs the handshake on a connected socket; the SSLSocket, verified for `name`."""
    sock.settimeout(timeout)
    ctx = ctx or context(ca)
    return ctx.wrap_socket(sock, server_hostname=name)


def connect(port, name, ca, before=b"", ctx=None, timeout=10, bind=None):
    """A TLS connection to 127.0.0.1:port for `name`; `before` (a PROXY header) is sent in
    plaintext first."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    if bind:
        sock.bind((bind, 0))
    sock.connect((HOST, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if before:
        sock.sendall(before)
    try:
        return wrap(sock, name, ca, ctx, timeout)
    except BaseException:
        sock.close()
        raise


def client_hello(name):
    """The bytes a client sends to open a TLS connection to `name` (its ClientHello records),
    made by the ssl module on memory buffers, so they are what a real client sends."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=name)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def cert_fingerprint(sock):
    """SHA-256 of the leaf the server sent, as openssl prints it (AA:BB:...)."""
    digest = hashlib.sha256(sock.getpeercert(binary_form=True)).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def read_until_closed(sock, deadline_s):
    """Reads until the peer closes (or deadline_s seconds pass). -> (bytes, closed, seconds).
    A close is an end of stream, a reset, or a TLS alert that ends the session."""
    start = time.monotonic()
    data = b""
    while True:
        left = start + deadline_s - time.monotonic()
        if left <= 0:
            return data, False, time.monotonic() - start
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except (socket.timeout, TimeoutError):
            return data, False, time.monotonic() - start
        except (ConnectionResetError, ssl.SSLError):
            return data, True, time.monotonic() - start
        if not chunk:
            return data, True, time.monotonic() - start
        data += chunk
