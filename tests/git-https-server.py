#!/usr/bin/env python3
"""git-https-server: Git's smart HTTP protocol over TLS on loopback, for tests.

Every request runs `git http-backend` (CGI) on the repositories under
--root, behind HTTP Basic authentication: the password must be the token in
--token-file, under any user name, as Git hosts take tokens. A request
without it, or with another, gets 401 and `WWW-Authenticate: Basic`, which
is what makes a Git client ask for credentials. Standard library only.

Binds port 0 on 127.0.0.1 and prints the port it got on stdout (so nothing
races for a port), then serves until killed.
"""

import argparse
import base64
import hmac
import os
import ssl
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


class Handler(BaseHTTPRequestHandler):
    root = ""
    token = b""

    def do_GET(self):
        self.serve()

    def do_POST(self):
        self.serve()

    def serve(self):
        user = self.authenticated_user()
        if user is None:
            self.reply(401, [("WWW-Authenticate", 'Basic realm="git"')], b"authentication required\n")
            return
        body = self.read_body()
        url = urlsplit(self.path)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": self.root,
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": unquote(url.path),
            "QUERY_STRING": url.query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": user,
            "REMOTE_ADDR": self.client_address[0],
        }
        for header, variable in [("Content-Encoding", "HTTP_CONTENT_ENCODING"), ("Git-Protocol", "GIT_PROTOCOL")]:
            if header in self.headers:
                env[variable] = self.headers[header]
        result = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True)
        if result.stderr:
            sys.stderr.write(result.stderr.decode(errors="replace"))
        head, content = split_cgi(result.stdout)
        if head is None:
            self.reply(500, [], b"git http-backend failed\n")
            return
        status, headers = 200, []
        for line in head.splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.reply(status, headers, content)

    def authenticated_user(self):
        scheme, _, credentials = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(credentials, validate=True).partition(b":")
        except ValueError:
            return None
        if not hmac.compare_digest(password, self.token):
            return None
        return user.decode(errors="replace") or "token"

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def reply(self, status, headers, content):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, format, *args):
        sys.stderr.write("%s %s\n" % (self.address_string(), format % args))


def split_cgi(output):
    """A CGI response's header block and body; (None, b"") when it has no header block."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        head, found, content = output.partition(separator)
        if found:
            return head.decode("latin-1"), content
    return None, b""


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def finish_request(self, request, client_address):
        # The TLS handshake runs here, on the request's thread, so a client
        # that stalls or refuses the certificate holds up no one else.
        try:
            request.do_handshake()
        except (ssl.SSLError, OSError) as error:
            sys.stderr.write("%s TLS handshake failed: %s\n" % (client_address[0], error))
            return
        super().finish_request(request, client_address)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="folder holding the bare repositories")
    parser.add_argument("--cert", required=True, help="PEM server certificate (with any intermediates)")
    parser.add_argument("--key", required=True, help="PEM private key of --cert")
    parser.add_argument("--token-file", required=True, help="file holding the token clients must send")
    args = parser.parse_args()

    with open(args.token_file, "rb") as f:
        Handler.token = f.read().strip()
    Handler.root = os.path.abspath(args.root)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    server = Server(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
