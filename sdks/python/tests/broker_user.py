"""A RabbitMQ user of its own for one test, created through the management HTTP API
(TASKER_RABBITMQ_MANAGEMENT_URL, default http://guest:guest@127.0.0.1:15672, an
administrator's) and deleted by delete(). Its name and password hold characters an amqp://
URL must percent-encode, and a ``+``, which the URL keeps as it is (RFC 3986 allows it in the
user information): the URL's decoding is what the test is about."""
import base64
import json
import os
import re
import urllib.parse
import urllib.request
import uuid

MANAGEMENT_URL = os.environ.get("TASKER_RABBITMQ_MANAGEMENT_URL", "http://guest:guest@127.0.0.1:15672")


class BrokerUser:
    def __init__(self, amqp_url: str, prefix: str, tag: str) -> None:
        """``prefix``: the only names (and server-named queues) it may configure, write and read."""
        self.amqp_url = amqp_url
        self.name = f"{tag}-{uuid.uuid4().hex[:6]} a@b:c/d+é"
        self.password = f"pw+{uuid.uuid4().hex[:12]}/@:%"
        path = urllib.parse.urlsplit(amqp_url).path
        self.vhost = "/" if path in ("", "/") else urllib.parse.unquote(path[1:])
        names = f"^({re.escape(prefix)}\\..*|amq\\.gen-.*)$"
        self._request("PUT", f"/api/users/{_segment(self.name)}", {"password": self.password, "tags": ""})
        try:
            self._request("PUT", f"/api/permissions/{_segment(self.vhost)}/{_segment(self.name)}", {"configure": names, "write": names, "read": names})
        except Exception:
            self.delete()
            raise

    @property
    def url(self) -> str:
        """The AMQP URL with this user's credentials in it."""
        parts = urllib.parse.urlsplit(self.amqp_url)
        host = parts.netloc.rsplit("@", 1)[-1]
        userinfo = f"{urllib.parse.quote(self.name, safe='+')}:{urllib.parse.quote(self.password, safe='+')}"
        return urllib.parse.urlunsplit((parts.scheme, f"{userinfo}@{host}", parts.path, parts.query, parts.fragment))

    def delete(self) -> None:
        self._request("DELETE", f"/api/users/{_segment(self.name)}", None)

    def _request(self, method: str, path: str, body) -> None:
        api = urllib.parse.urlsplit(MANAGEMENT_URL)
        user = urllib.parse.unquote(api.username or "guest")
        password = urllib.parse.unquote(api.password or "guest")
        host = api.netloc.rsplit("@", 1)[-1]
        req = urllib.request.Request(f"{api.scheme}://{host}{path}", method=method, data=None if body is None else json.dumps(body).encode())
        req.add_header("authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
        if body is not None:
            req.add_header("content-type", "application/json")
        with urllib.request.urlopen(req, timeout=10):
            pass


def _segment(text: str) -> str:
    return urllib.parse.quote(text, safe="")
