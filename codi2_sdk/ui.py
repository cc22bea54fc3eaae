"""The web chat page: a Gradio Blocks app over any backend, run alone (``codi2 ui``) or mounted on
``codi2 serve`` at ``/ui``.

The page keeps one :class:`~codi2_sdk.Conversation` per browser session, with branches (``fork``) and
``undo``; turns take text and files (pictures, sounds, clips: uploaded or recorded), in-context example
pairs are added beside the chat, answers stream in (text as it comes, diffusion steps as a progress line) and
media show as pictures and players. Needs the ``ui`` extra (``pip install 'codi2-sdk[ui]'``).
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from .backends.base import Backend
from .content import MediaPart, Text, open_media
from .conversation import Conversation
from .errors import Codi2Error, MissingDependencyError, describe_error
from .events import MediaDone, Progress, TextDelta
from .messages import Message

__all__ = ["build_ui", "mount_ui"]

Gate = Callable[[], contextlib.AbstractAsyncContextManager[Any]]
"""Where a turn waits for its turn: the server's admission queue, or nothing when the page runs alone."""

_OUTPUTS = ["auto", "text", "image", "audio", "video"]


def _gradio() -> Any:
    try:
        import gradio
    except ImportError:
        raise MissingDependencyError("the web page needs Gradio: pip install 'codi2-sdk[ui]'") from None
    return gradio


@dataclass
class _Session:
    """One browser session: its branches of the conversation and the folder its media are shown from."""

    backend: Backend | Callable[[], Backend]
    branches: dict[str, Conversation] = field(default_factory=dict)
    current: str = "main"
    folder: Path | None = None  # made with the first medium shown; removed by close()

    @property
    def conversation(self) -> Conversation:
        if self.current not in self.branches:  # made on first use: a server's model may still be loading
            backend = self.backend if isinstance(self.backend, Backend) else self.backend()
            self.branches[self.current] = Conversation(backend=backend)
        return self.branches[self.current]

    def file_of(self, part: MediaPart) -> str:
        """The medium as a file in the session's folder (named by its content, so written once)."""
        # browsers show every picture and sound format read here, and play MP4 and WebM, but not a GIF as a video
        suffix = ".mp4" if part.type == "video" and str(part.mime_type).startswith("image/") else part.suffix
        if self.folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix="codi2-ui-"))
        path = self.folder / f"{part.sha256[:16]}{suffix}"
        if not path.exists():
            part.save(path)
        return str(path)

    def close(self) -> None:
        """Remove the session's files (Gradio has served its own copies): when the chat restarts, and when Gradio
        forgets the session (an hour after its tab closed)."""
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


def _forget(session: _Session | None) -> None:
    if session is not None:
        session.close()


def _chat_rows(gr: Any, session: _Session, messages: list[Message]) -> list[dict[str, Any]]:
    """Messages as the Chatbot's rows: one row per text run and per medium, in order."""
    rows: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            continue
        for part in message.parts:
            if isinstance(part, Text):
                if rows and rows[-1]["role"] == message.role and isinstance(rows[-1]["content"], str):
                    rows[-1]["content"] += " " + part.text
                else:
                    rows.append({"role": message.role, "content": part.text})
            else:
                component = {"image": gr.Image, "audio": gr.Audio, "video": gr.Video}[part.type]
                rows.append({"role": message.role, "content": component(value=session.file_of(part))})
    return rows


_NO_EXAMPLES = "No examples yet: add a before/after pair to show the model an edit without naming it."


def _examples_markdown(conversation: Conversation) -> str:
    if not conversation.examples:
        return _NO_EXAMPLES

    def side(parts: list[Any]) -> str:
        return ", ".join(p.text if isinstance(p, Text) else p.type for p in parts)

    lines = [f"{i}. {side(e.inputs)} → {side(e.outputs)}" for i, e in enumerate(conversation.examples, 1)]
    return "**Examples** (the next turns follow them):\n\n" + "\n".join(lines)


def _settings(seed: float | None, output: str, steps: float | None) -> dict[str, Any]:
    config: dict[str, Any] = {"output_modality": output}
    if seed is not None:
        config["seed"] = int(seed)
    if steps:
        config |= {m: {"steps": int(steps)} for m in ("image", "audio", "video")}
    return config


class _Callbacks:
    """What the page's controls do, one method per control; each takes and returns the browser's session."""

    def __init__(self, gr: Any, backend: Backend | Callable[[], Backend], gate: Gate, title: str | None) -> None:
        self.gr, self.backend, self.gate, self.title = gr, backend, gate, title

    def describe(self) -> str:
        """The page's heading: the model's name and what it reads and writes (or why it is not ready)."""
        try:
            capabilities = (self.backend if isinstance(self.backend, Backend) else self.backend()).capabilities
        except Codi2Error as exc:
            return f"# {self.title or 'codi2'}\nThe model is not ready: {exc}. Reload the page in a moment."
        line = (
            f"# {self.title or 'codi2 · ' + capabilities.model}\nReads {', '.join(capabilities.input_modalities)}; "
            f"writes {', '.join(capabilities.output_modalities)}."
        )
        if capabilities.prompt_examples:
            line += f" Try: *{'*, *'.join(capabilities.prompt_examples[:4])}*"
        return line

    def _session(self, session: _Session | None) -> _Session:
        return session or _Session(self.backend)

    def _view(self, session: _Session) -> tuple[Any, ...]:
        conv = session.conversation
        return (
            _chat_rows(self.gr, session, conv.messages),
            _examples_markdown(conv),
            self.gr.update(choices=list(session.branches), value=session.current),
            session,
        )

    def _turn(self, entry: dict[str, Any] | None) -> list[Any]:
        entry = entry or {}
        files, text = entry.get("files") or [], (entry.get("text") or "").strip()
        try:
            parts: list[Any] = [open_media(f if isinstance(f, str) else f["path"]) for f in files]
        except (Codi2Error, OSError) as exc:
            raise self.gr.Error(f"cannot read that file: {describe_error(exc)}") from None
        if text:
            parts.append(text)
        if not parts:
            raise self.gr.Error("write something, or attach a picture, a sound or a clip")
        return parts

    async def send(
        self,
        entry: dict[str, Any] | None,
        seed: float | None,
        output: str,
        steps: float | None,
        session: _Session | None,
    ) -> AsyncIterator[tuple[Any, ...]]:
        """Send a turn and stream the answer in: text as it comes, a progress line per diffusion step."""
        session, parts = self._session(session), self._turn(entry)
        conv = session.conversation
        shown = _chat_rows(self.gr, session, [*conv.messages, Message(role="user", parts=[_part(p) for p in parts])])
        answer: list[dict[str, Any]] = []
        yield (None, shown, "waiting for the model…", session)
        try:
            async with self.gate():
                async for event in conv.astream(*parts, config=_settings(seed, output, steps)):
                    if isinstance(event, TextDelta):
                        if answer and isinstance(answer[-1]["content"], str):
                            answer[-1]["content"] += event.text
                        else:
                            answer.append({"role": "assistant", "content": event.text})
                        yield (None, shown + answer, "writing…", session)
                    elif isinstance(event, Progress):
                        status = f"making the {event.modality}: step {event.step} of {event.total}"
                        yield (None, shown + answer, status, session)
                    elif isinstance(event, MediaDone):
                        answer += _chat_rows(self.gr, session, [Message(role="assistant", parts=[event.part])])
                        yield (None, shown + answer, "", session)
        except Codi2Error as exc:
            raise self.gr.Error(f"{type(exc).__name__}: {exc}") from None
        yield (None, _chat_rows(self.gr, session, conv.messages), "", session)

    def undo(self, session: _Session | None) -> tuple[Any, ...]:
        """Take back the last turn."""
        session = self._session(session)
        try:
            session.conversation.undo()
        except Codi2Error as exc:
            self.gr.Warning(str(exc))
        return self._view(session)

    def fork(self, session: _Session | None) -> tuple[Any, ...]:
        """Go on in a new branch from here."""
        session = self._session(session)
        name = f"branch {len(session.branches) + 1}"
        session.branches[name] = session.conversation.fork()
        session.current = name
        return self._view(session)

    def switch(self, name: str, session: _Session | None) -> tuple[Any, ...]:
        """Show another branch."""
        session = self._session(session)
        if name in session.branches:
            session.current = name
        return self._view(session)

    def restart(self, session: _Session | None) -> tuple[Any, ...]:
        """A new, empty chat; the old one's files go."""
        _forget(session)
        return self._view(_Session(self.backend))

    def add_example(self, before: Any, after: Any, session: _Session | None) -> tuple[Any, ...]:
        """Show the model an edit: a before/after pair the next turns follow."""
        session = self._session(session)
        if not before or not after:
            raise self.gr.Error("an example needs a file before and a file after the edit")
        try:
            session.conversation.add_example(inputs=open_media(before), outputs=open_media(after))
        except (Codi2Error, OSError) as exc:
            raise self.gr.Error(f"cannot use that example: {describe_error(exc)}") from None
        return (None, None, _examples_markdown(session.conversation), session)

    def clear_examples(self, session: _Session | None) -> tuple[Any, ...]:
        """Forget the examples."""
        session = self._session(session)
        session.conversation.clear_examples()
        return (_examples_markdown(session.conversation), session)


def _chat_column(gr: Any, accepts: list[str]) -> SimpleNamespace:
    """The conversation, the entry box and the branch controls."""
    with gr.Column(scale=3):
        chat = gr.Chatbot(label="conversation", height=520, elem_id="codi2-chat")
        status = gr.Markdown("", elem_id="codi2-status")
        entry = gr.MultimodalTextbox(
            placeholder="Ask, or attach a picture, a sound or a clip…",
            file_types=accepts,
            file_count="multiple",
            sources=["upload", "microphone"],
            show_label=False,
            elem_id="codi2-entry",
        )
        with gr.Row():
            undo = gr.Button("Undo last turn", size="sm")
            fork = gr.Button("Fork", size="sm")
            branch = gr.Dropdown(["main"], value="main", label="branch", scale=2)
            new = gr.Button("New chat", size="sm")
    return SimpleNamespace(chat=chat, status=status, entry=entry, undo=undo, fork=fork, branch=branch, new=new)


def _side_column(gr: Any, accepts: list[str]) -> SimpleNamespace:
    """The in-context examples and the settings."""
    with gr.Column(scale=2):
        with gr.Accordion("In-context examples", open=True):
            examples = gr.Markdown(_NO_EXAMPLES)
            before = gr.File(label="before", file_types=accepts, type="filepath", elem_id="codi2-before")
            after = gr.File(label="after", file_types=accepts, type="filepath", elem_id="codi2-after")
            with gr.Row():
                add = gr.Button("Add example", size="sm")
                clear = gr.Button("Clear examples", size="sm")
        with gr.Accordion("Settings", open=False):
            seed = gr.Number(label="seed (empty: random)", value=None, precision=0)
            output = gr.Dropdown(_OUTPUTS, value="auto", label="answer with")
            steps = gr.Slider(0, 100, value=0, step=1, label="diffusion steps (0: the model's default)")
    return SimpleNamespace(
        examples=examples, before=before, after=after, add=add, clear=clear, seed=seed, output=output, steps=steps
    )


def build_ui(backend: Backend | Callable[[], Backend], *, gate: Gate | None = None, title: str | None = None) -> Any:
    """The chat page (a ``gradio.Blocks``) for ``backend`` (or a function that returns it when a page needs
    it: a server's model may still be loading); ``gate`` wraps each turn (the server's queue)."""
    gr = _gradio()
    on = _Callbacks(gr, backend, gate or contextlib.nullcontext, title)
    accepts = ["image", "audio", "video"]
    # Gradio's own copies of uploads and answers are swept daily (older than a day), so a page served for months
    # does not fill its disk; a session's state is dropped an hour after its tab closes, and its files with it.
    with gr.Blocks(title=title or "codi2", analytics_enabled=False, delete_cache=(3600, 86400)) as page:
        session = gr.State(None, delete_callback=_forget)
        heading = gr.Markdown(f"# {title or 'codi2'}")
        with gr.Row():
            left, right = _chat_column(gr, accepts), _side_column(gr, accepts)
        shown = [left.chat, right.examples, left.branch, session]
        page.load(on.describe, None, heading)
        left.entry.submit(
            on.send,
            [left.entry, right.seed, right.output, right.steps, session],
            [left.entry, left.chat, left.status, session],
        )
        left.undo.click(on.undo, [session], shown)
        left.fork.click(on.fork, [session], shown)
        left.branch.input(on.switch, [left.branch, session], shown)
        left.new.click(on.restart, [session], shown)
        right.add.click(
            on.add_example, [right.before, right.after, session], [right.before, right.after, right.examples, session]
        )
        right.clear.click(on.clear_examples, [session], [right.examples, session])
    return page


def _part(item: Any) -> Any:
    return Text(text=item) if isinstance(item, str) else item


def mount_ui(
    app: Any,
    backend: Backend | Callable[[], Backend],
    *,
    path: str = "/ui",
    api_key: str | None = None,
    gate: Gate | None = None,
) -> Any:
    """Mount the page on a FastAPI ``app`` at ``path``; with ``api_key``, the page asks for it first (as the
    password; any user name)."""
    gr = _gradio()
    auth = None
    if api_key is not None:
        expected = api_key.encode()

        def auth(_user: str, password: str) -> bool:
            return secrets.compare_digest(password.encode(), expected)

    return gr.mount_gradio_app(
        app,
        build_ui(backend, gate=gate),
        path=path,
        auth=auth,
        auth_message="This server needs its API key: type it as the password (any user name).",
    )
