"""The business API driven by an unmodified third-party Cloud API client, pywa.

Run by ops/business/pywa-test.sh, which builds the binaries and starts courier-server. pywa is
pointed at the business API only through its public `session=` parameter: an httpx client
whose transport sends what pywa addresses to graph.facebook.com to the business API instead.
Its webhook handling is pywa's own (`webhook_challenge_handler`, `webhook_update_validator`
with the app secret, `webhook_update_handler` and its handlers) behind a small HTTP server.

A business, its number and a token are made with `courier-business admin`; consumers are
registered and act with the `courier` CLI. Each check prints one line; the last line sums up.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import hmac
import http.server
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pywa
from pywa import WhatsApp, errors, handlers, types
from pywa.types import templates as tpl

# Deadlines only turn a hang into a failure; nothing here measures time.
DEADLINE_SECS = 60
VERIFY_TOKEN = "pywa-verify-token"
BUSINESS_PHONE = "+15550100009"
ALICE_PHONE = "+15550100001"
BOB_PHONE = "+15550100002"


class Failure(Exception):
    """A check that did not hold."""


def digits(phone: str) -> str:
    return "".join(c for c in phone if c.isdigit())


class Checks:
    """Counts the checks; each prints one line."""

    def __init__(self) -> None:
        self.passed = 0

    def ok(self, what: str) -> None:
        self.passed += 1
        print(f"ok {self.passed} - {what}", flush=True)

    def that(self, condition: bool, what: str, detail: Any = "") -> None:
        if not condition:
            raise Failure(f"{what}: {detail}" if detail != "" else what)
        self.ok(what)

    def equal(self, actual: Any, expected: Any, what: str) -> None:
        self.that(actual == expected, what, f"expected {expected!r}, got {actual!r}")


def wait_until(what: str, found: Callable[[], Any], deadline: float = DEADLINE_SECS) -> Any:
    """Polls `found` until it returns something truthy; fails after the deadline."""
    started = time.monotonic()
    while True:
        value = found()
        if value:
            return value
        if time.monotonic() - started > deadline:
            raise Failure(f"gave up waiting for {what}")
        time.sleep(0.05)


# --- pywa pointed at the business API -------------------------------------------------------


class GraphRedirect(httpx.BaseTransport):
    """An httpx transport that sends requests for graph.facebook.com to the business API under
    test (scheme, host and port replaced; path, query, headers and body as pywa made them)."""

    def __init__(self, target: str) -> None:
        self._target = httpx.URL(target)
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host != "graph.facebook.com":
            raise httpx.ConnectError(f"this test reaches no host but the business API: {request.url}")
        url = request.url.copy_with(
            scheme=self._target.scheme, host=self._target.host, port=self._target.port
        )
        headers = [(b"Host", url.netloc)]
        headers += [(k, v) for k, v in request.headers.raw if k.lower() != b"host"]
        redirected = httpx.Request(
            request.method, url, headers=headers, stream=request.stream, extensions=request.extensions
        )
        return self._inner.handle_request(redirected)

    def close(self) -> None:
        self._inner.close()


def session(business_url: str) -> httpx.Client:
    return httpx.Client(transport=GraphRedirect(business_url), timeout=30)


@dataclasses.dataclass
class Verification:
    mode: str | None
    token: str | None
    status: int


class Receiver:
    """pywa's webhook handling behind a threaded HTTP server: the verification request goes to
    `webhook_challenge_handler`, each POST through `webhook_update_validator` (the signature
    under the app secret) and `webhook_update_handler` (pywa's parsing and handlers)."""

    def __init__(self, wa: WhatsApp, listen: str) -> None:
        host, port = listen.rsplit(":", 1)
        self.url = f"http://{listen}/webhook"
        self.verifications: list[Verification] = []
        self.accepted = 0
        self.refused: list[int] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self, status: int, body: str | None) -> None:
                data = (body or "").encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                param = lambda name: query.get(name, [None])[0]  # noqa: E731
                body, status = wa.webhook_challenge_handler(
                    vt=param(pywa.utils.HUB_VT), ch=param(pywa.utils.HUB_CH)
                )
                receiver.verifications.append(
                    Verification(param("hub.mode"), param(pywa.utils.HUB_VT), status)
                )
                self._answer(status, body)

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                refused = wa.webhook_update_validator(
                    update=body, hmac_header=self.headers.get(pywa.utils.HUB_SIG)
                )
                if refused is not None:
                    receiver.refused.append(refused[1])
                    self._answer(refused[1], refused[0])
                    return
                answer, status = wa.webhook_update_handler(update=body)
                receiver.accepted += 1
                self._answer(status, answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((host, int(port)), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Updates:
    """What pywa's handlers were given, in arrival order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[Any] = []

    def add(self, _: WhatsApp, update: Any) -> None:
        with self._lock:
            self._items.append(update)

    def all(self) -> list[Any]:
        with self._lock:
            return list(self._items)

    def wait(self, what: str, wanted: Callable[[Any], bool]) -> Any:
        return wait_until(what, lambda: next((u for u in self.all() if wanted(u)), None))

    def statuses(self, message_id: str) -> list[str]:
        return [
            str(u.status)
            for u in self.all()
            if isinstance(u, types.MessageStatus) and u.id == message_id
        ]


# --- the courier binaries -------------------------------------------------------------------


class Courier:
    def __init__(self, args: argparse.Namespace) -> None:
        self.bin = Path(args.bin_dir)
        self.data = Path(args.data_dir)
        self.work = Path(args.work_dir)
        self.platform = args.platform_url
        self.business = args.business_url

    def run(self, program: str, *argv: str) -> str:
        command = [str(self.bin / program), *argv]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=DEADLINE_SECS, check=False
            )
        except subprocess.TimeoutExpired as e:
            raise Failure(f"{' '.join(command)} did not finish") from e
        if done.returncode != 0:
            raise Failure(
                f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()}"
            )
        return done.stdout

    def admin(self, *argv: str) -> dict:
        out = self.run(
            "courier-business", "admin", "--url", self.business, "--data-dir", str(self.data), *argv
        )
        return json.loads(out)

    def consumer(self, name: str, phone: str) -> Consumer:
        home = self.work / name
        self.run("courier", "--home", str(home), "--json", "register", "--server", self.platform, "--phone", phone)
        code = json.loads(
            self.run(
                "courier", "--json", "admin", "code", phone,
                "--server", self.platform, "--token-file", str(self.data / "admin.token"),
            )
        )["code"]
        me = json.loads(self.run("courier", "--home", str(home), "--json", "verify", code, "--name", name))
        return Consumer(self, home, phone, me["user_id"])


@dataclasses.dataclass
class Consumer:
    courier: Courier
    home: Path
    phone: str
    user_id: str

    def cli(self, *argv: str) -> list[dict]:
        out = self.courier.run("courier", "--home", str(self.home), "--json", *argv)
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def listen(self) -> Listener:
        return Listener(self)


class Listener:
    """`courier listen --json --read` in the background (it marks everything shown as read),
    its events collected; stopped before the device runs another command."""

    def __init__(self, consumer: Consumer) -> None:
        self._events: list[dict] = []
        self._lock = threading.Lock()
        self._log = open(consumer.home.with_suffix(".listen.log"), "w")  # noqa: SIM115
        self.process = subprocess.Popen(
            [str(consumer.courier.bin / "courier"), "--home", str(consumer.home), "--json", "listen", "--read"],
            stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL, text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.strip():
                with self._lock:
                    self._events.append(json.loads(line))

    def events(self) -> list[dict]:
        with self._lock:
            return list(self._events)

    def message(self, message_id: str) -> dict:
        return wait_until(
            f"message {message_id} at the consumer",
            lambda: next(
                (e for e in self.events() if e.get("event") == "message" and e.get("id") == message_id),
                None,
            ),
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=10)
        self._log.close()


def wait_ready(c: Courier, server_pid: int) -> None:
    def ready() -> bool:
        try:
            os.kill(server_pid, 0)
        except OSError as e:
            raise Failure("courier-server exited during start-up (see its log below)") from e
        try:
            return (
                httpx.get(f"{c.platform}/readyz", timeout=2).status_code == 200
                and httpx.get(f"{c.business}/healthz", timeout=2).status_code == 200
            )
        except httpx.HTTPError:
            return False

    wait_until("courier-server to be ready", ready)


# --- the test -------------------------------------------------------------------------------


def test(args: argparse.Namespace, check: Checks, cleanups: list[Callable[[], None]]) -> None:
    c = Courier(args)
    wait_ready(c, args.server_pid)
    check.ok(f"courier-server is up (pywa {pywa.__version__})")

    created = c.admin("create-business", "Acme")
    waba_id, app_id, app_secret = created["id"], created["app_id"], created["app_secret"]
    number = c.admin("add-number", waba_id, BUSINESS_PHONE, "--name", "Acme")
    token = c.admin("create-token", waba_id, "--name", "pywa")["access_token"]
    check.ok(f"business {waba_id}, number {number['id']} and a token made with courier-business admin")
    alice = c.consumer("alice", ALICE_PHONE)
    bob = c.consumer("bob", BOB_PHONE)
    check.ok("consumers registered with the courier CLI")

    wa = WhatsApp(
        phone_id=number["id"],
        token=token,
        session=session(c.business),
        waba_id=waba_id,
        app_id=app_id,
        app_secret=app_secret,
        verify_token=VERIFY_TOKEN,
        validate_updates=True,
    )
    updates = Updates()
    wa.add_handlers(
        handlers.MessageHandler(updates.add),
        handlers.MessageStatusHandler(updates.add),
        handlers.CallbackButtonHandler(updates.add),
        handlers.CallbackSelectionHandler(updates.add),
    )
    receiver = Receiver(wa, args.webhook_listen)
    cleanups.append(receiver.close)

    # Subscriptions: a callback that fails pywa's verification is refused (2200); pywa's
    # app-scope registration (app token, /{app-id}/subscriptions) and its WABA override
    # (/{waba-id}/subscribed_apps with override_callback_uri) pass the handshake.
    try:
        wa.override_waba_callback_url(callback_url=receiver.url, verify_token="not-the-token")
        raise Failure("a callback that fails its verification was accepted")
    except errors.WhatsAppError as e:
        check.equal(e.code, 2200, "a callback failing pywa's challenge handler is refused with 2200")
    check.equal(
        [(v.mode, v.token, v.status) for v in receiver.verifications],
        [("subscribe", "not-the-token", 403)],
        "pywa's challenge handler refused the wrong verify token",
    )
    app_token = wa.get_app_access_token(app_id=int(app_id), app_secret=app_secret)
    done = wa.set_app_callback_url(
        app_id=int(app_id),
        app_access_token=app_token,
        callback_url=receiver.url,
        verify_token=VERIFY_TOKEN,
        fields=("messages",),
    )
    check.that(done.success, "pywa sets the app's callback URL with an app access token")
    done = wa.override_waba_callback_url(callback_url=receiver.url, verify_token=VERIFY_TOKEN)
    check.that(done.success, "pywa overrides the WABA's callback URL")
    check.equal(
        [(v.token, v.status) for v in receiver.verifications[1:]],
        [(VERIFY_TOKEN, 200), (VERIFY_TOKEN, 200)],
        "both registrations ran the verification handshake against pywa's handler",
    )

    # Error mapping into pywa's exception classes.
    try:
        wa.send_message(to=digits(bob.phone), text="hello?")
        raise Failure("free-form text to a consumer who never wrote was accepted")
    except errors.ReEngagementMessage as e:
        check.equal(e.code, 131047, "outside the 24 h window pywa raises ReEngagementMessage (131047)")
    bad = WhatsApp(phone_id=number["id"], token="EAAGarbage", session=session(c.business))
    try:
        bad.send_message(to=digits(alice.phone), text="hello?")
        raise Failure("a bad token was accepted")
    except errors.AuthorizationError as e:
        check.that(
            isinstance(e, errors.ExpiredAccessToken) and e.code == 190,
            "a bad token raises pywa's authorization error (190)",
            repr(e),
        )

    # A template, created through pywa's template API.
    body = tpl.BodyText("Your order {{1}} is on its way", "A-1")
    track = tpl.QuickReplyButton(text="Track it")
    template = tpl.Template(
        name="order_update",
        category=tpl.TemplateCategory.UTILITY,
        language=tpl.TemplateLanguage.ENGLISH_US,
        parameter_format=tpl.ParamFormat.POSITIONAL,
        components=[body, tpl.Buttons(buttons=[track])],
    )
    made = wa.create_template(template=template)
    check.equal(made.status, tpl.TemplateStatus.APPROVED, "pywa creates an (auto-approved) template")
    details = wa.get_template(template_id=made.id)
    check.equal((details.name, details.status), ("order_update", tpl.TemplateStatus.APPROVED), "pywa reads it back")

    # The number and its profile, through pywa's business management calls.
    phone = wa.get_business_phone_number()
    check.equal(
        (phone.id, phone.verified_name, phone.display_phone_number),
        (number["id"], "Acme", BUSINESS_PHONE),
        "pywa reads the business phone number",
    )
    wa.update_business_profile(about="Parcels, on time", industry=types.Industry.RETAIL)
    profile = wa.get_business_profile()
    check.equal(
        (profile.about, profile.industry), ("Parcels, on time", types.Industry.RETAIL),
        "pywa updates and reads the business profile",
    )

    # The consumer writes; pywa's handler gets a Message, its signature checked by pywa.
    sent = alice.cli("send", BUSINESS_PHONE, "hello Acme")[0]
    hello_id = sent["id"]
    msg: types.Message = updates.wait(
        "the consumer's message in pywa's handler",
        lambda u: isinstance(u, types.Message) and u.text == "hello Acme",
    )
    check.that(
        msg.type == types.MessageType.TEXT
        and msg.from_user.wa_id == digits(alice.phone)
        and msg.metadata.phone_number_id == number["id"]
        and msg.waba_id == waba_id,
        "pywa's handler receives the consumer's text as a Message",
        msg,
    )
    check.equal(
        msg.from_user.bsuid,
        f"ZZ.{uuid.UUID(alice.user_id).int}",
        "the sender's user id has the business-scoped shape pywa expects",
    )
    check.that(receiver.accepted > 0 and not receiver.refused, "pywa validated the webhook signatures", receiver.refused)
    forged_body = json.dumps(msg.raw).encode()
    forged = httpx.post(
        receiver.url,
        content=forged_body,
        headers={pywa.utils.HUB_SIG: "sha256=" + hmac.new(b"not the secret", forged_body, hashlib.sha256).hexdigest()},
    )
    check.equal(forged.status_code, 403, "pywa refuses a webhook with a wrong signature")

    # pywa answers: text, a reply, a reaction, reply buttons, a list, a template; marks read.
    to = digits(alice.phone)
    text = wa.send_message(to=to, text="Hi Alice, Acme here")
    # A reply goes to the sender by its business-scoped user id, as pywa prefers.
    reply = msg.reply_text("How can we help?", quote=True)
    reaction = msg.react("👍")
    buttons = wa.send_message(
        to=to,
        text="Track or cancel?",
        buttons=[
            types.Button(title="Track", callback_data="track"),
            types.Button(title="Cancel", callback_data="cancel"),
        ],
    )
    listing = wa.send_message(
        to=to,
        text="When shall we deliver?",
        buttons=types.SectionList(
            button_title="Pick a slot",
            sections=[
                types.Section(
                    title="Tomorrow",
                    rows=[
                        types.SectionRow(title="Morning", callback_data="am", description="9 to 12"),
                        types.SectionRow(title="Afternoon", callback_data="pm", description="12 to 18"),
                    ],
                )
            ],
        ),
    )
    templated = wa.send_template(
        to=to,
        template=template,
        params=[body.params("A-17"), track.params(callback_data="track-A-17", index=0)],
    )
    check.that(msg.mark_as_read().success, "pywa marks the consumer's message as read")
    check.ok("pywa sent text, reply, reaction, buttons, list and template")

    listener = alice.listen()
    cleanups.append(listener.stop)
    seen = listener.message(text.id)
    check.equal((seen["kind"], seen["text"]), ("text", "Hi Alice, Acme here"), "the consumer gets the text")
    seen = listener.message(reply.id)
    check.equal((seen["text"], seen.get("reply_to")), ("How can we help?", hello_id), "the consumer gets the reply, quoting its message")
    seen = wait_until(
        "the reaction at the consumer",
        lambda: next((e for e in listener.events() if e.get("kind") == "reaction"), None),
    )
    check.equal(seen["reaction"], {"message_id": hello_id, "emoji": "👍"}, "the consumer gets the reaction on its message")
    seen = listener.message(buttons.id)
    check.equal(
        (seen["kind"], [ch["id"] for ch in seen.get("choices", [])]),
        ("interactive", ["track", "cancel"]),
        "the consumer gets the reply buttons",
    )
    seen = listener.message(listing.id)
    check.equal(
        (seen["kind"], [(ch["id"], ch["title"]) for ch in seen.get("choices", [])]),
        ("interactive", [("am", "Morning"), ("pm", "Afternoon")]),
        "the consumer gets the list",
    )
    seen = listener.message(templated.id)
    check.that(
        seen["kind"] == "template"
        and seen["template"]["name"] == "order_update"
        and "A-17" in seen["text"]
        and [ch["id"] for ch in seen.get("choices", [])] == ["track-A-17"],
        "the consumer gets the template, filled in, with its quick reply",
        seen,
    )
    wait_until(
        "the business's read receipt at the consumer",
        lambda: any(
            e.get("event") == "receipt" and e.get("kind") == "read" and hello_id in e.get("ids", [])
            for e in listener.events()
        ),
    )
    check.ok("the consumer sees its message read by the business")

    # Statuses of what pywa sent reach pywa's handler (the listener marks everything read).
    for name, sent_message in [
        ("text", text),
        ("reply", reply),
        ("buttons", buttons),
        ("list", listing),
        ("template", templated),
    ]:
        order = wait_until(
            f"sent, delivered and read statuses of the {name}",
            lambda m=sent_message: (s := updates.statuses(m.id)) and "read" in s and s,
        )
        check.equal(order, ["sent", "delivered", "read"], f"pywa gets sent, delivered, read for the {name}")
    wait_until("a sent status of the reaction", lambda: "sent" in updates.statuses(reaction.id))
    check.ok("pywa gets a sent status for the reaction")
    listener.stop()

    # The consumer answers the buttons, the list and the template's quick reply.
    alice.cli("choose", BUSINESS_PHONE, buttons.id, "2")
    pressed: types.CallbackButton = updates.wait(
        "the button reply in pywa's handler",
        lambda u: isinstance(u, types.CallbackButton) and not u.is_quick_reply,
    )
    check.that(
        pressed.data == "cancel" and pressed.title == "Cancel" and pressed.reply_to_message.id == buttons.id,
        "pywa gets the consumer's button press as a CallbackButton",
        pressed,
    )
    alice.cli("choose", BUSINESS_PHONE, listing.id, "pm")
    picked: types.CallbackSelection = updates.wait(
        "the list selection in pywa's handler", lambda u: isinstance(u, types.CallbackSelection)
    )
    check.that(
        picked.data == "pm" and picked.title == "Afternoon" and picked.description == "12 to 18"
        and picked.reply_to_message.id == listing.id,
        "pywa gets the consumer's list choice as a CallbackSelection",
        picked,
    )
    alice.cli("choose", BUSINESS_PHONE, templated.id, "1")
    quick: types.CallbackButton = updates.wait(
        "the template quick reply in pywa's handler",
        lambda u: isinstance(u, types.CallbackButton) and u.is_quick_reply,
    )
    check.equal(quick.data, "track-A-17", "pywa gets the template's quick reply as a CallbackButton")

    # The consumer's history has everything, and its own message read.
    history = {e["id"]: e for e in alice.cli("history", BUSINESS_PHONE)}
    missing = [m.id for m in (text, reply, buttons, listing, templated) if m.id not in history]
    check.that(not missing, "the consumer's history holds every message pywa sent", missing)
    check.equal(history[hello_id]["status"], "read", "the consumer's history shows its message read")
    check.equal(receiver.refused, [403], "every webhook but the forged one passed pywa's signature check")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin-dir", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--work-dir", required=True)
    parser.add_argument("--platform-url", required=True)
    parser.add_argument("--business-url", required=True)
    parser.add_argument("--webhook-listen", required=True)
    parser.add_argument("--server-pid", type=int, required=True)
    args = parser.parse_args()
    check = Checks()
    cleanups: list[Callable[[], None]] = []
    failed = 0
    try:
        test(args, check, cleanups)
    except Failure as e:
        failed = 1
        print(f"FAIL - {e}", flush=True)
    except Exception as e:  # an unexpected answer: pywa raised, a shape did not parse
        failed = 1
        print(f"FAIL - unexpected {type(e).__name__}: {e}", flush=True)
        import traceback

        traceback.print_exc()
    finally:
        for cleanup in reversed(cleanups):
            try:
                cleanup()
            except Exception as e:  # noqa: BLE001 (cleanup must not hide the result)
                print(f"-- cleanup: {e}", file=sys.stderr)
    print(f"pywa: {check.passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
