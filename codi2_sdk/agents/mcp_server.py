"""The agent tools as an MCP server (the official ``mcp`` package): ``codi2 mcp`` over stdio or streamable HTTP.

The tools are the LangChain toolkit's (:func:`~codi2_sdk.agents.codi2_toolkit`), with the same names, argument
schemas and media store: ``generate_image``, ``generate_audio``, ``generate_video``, ``edit_image_in_context``,
``edit_audio_in_context``, ``edit_video_in_context`` and ``describe_media``. A call answers with a text content
naming the new medium's id (for later calls) and the medium itself as MCP image or audio content, or a video as an
embedded resource (MCP has no video content); a bad argument or reference answers with ``isError`` and a message
that says what to fix.
"""

from __future__ import annotations

from typing import Any

from langchain_core.tools import ToolException
from mcp import types
from mcp.server.lowlevel import Server
from pydantic import ValidationError

from ..backends.base import Backend
from ..config import GenerationConfig
from ..errors import Codi2Error, invalid_request
from ..formats.mcp_content import to_mcp_content
from .langchain_tools import codi2_toolkit
from .store import MediaStore

__all__ = ["build_mcp_server", "run_stdio"]


_CONTENT_TYPES: dict[str, Any] = {
    "image": types.ImageContent,
    "audio": types.AudioContent,
    "resource": types.EmbeddedResource,
}


def _error(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=message)], is_error=True)


def build_mcp_server(
    backend: Backend, *, store: MediaStore | None = None, config: GenerationConfig | dict[str, Any] | None = None
) -> Server:
    """An MCP server whose tools run on ``backend`` (media by id or by path under ``store``'s allowed roots)."""
    from .. import __version__

    tools = {tool.name: tool for tool in codi2_toolkit(backend, store=store, config=config)}

    async def on_list_tools(context: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(
            tools=[
                types.Tool(name=t.name, description=t.description, input_schema=t.args_schema.model_json_schema())  # type: ignore[union-attr]
                for t in tools.values()
            ]
        )

    async def on_call_tool(context: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        tool = tools.get(params.name)
        if tool is None:
            return _error(f"no tool {params.name!r}; the tools are {', '.join(tools)}")
        try:
            arguments = tool.args_schema.model_validate(params.arguments or {}).model_dump()  # type: ignore[union-attr]
        except ValidationError as exc:
            return _error(str(invalid_request(exc, "arguments")))
        try:
            request = tool._build(**arguments)
            answer = await backend.agenerate(request)
            text, message = tool._respond(answer)
        except ToolException as exc:
            return _error(str(exc))
        except Codi2Error as exc:
            return _error(f"{type(exc).__name__}: {exc}")
        content: list[Any] = [types.TextContent(type="text", text=text if isinstance(text, str) else message.text)]
        if tool.produces is not None:
            media = [p for p in message.parts if p.type == tool.produces]
            for block in to_mcp_content(media):
                content.append(_CONTENT_TYPES[block["type"]].model_validate(block))
        return types.CallToolResult(content=content)

    return Server(
        "codi2",
        version=__version__,
        instructions="CoDi-2 tools: make, edit by example, and describe images, audio and video. Media go by id.",
        on_list_tools=on_list_tools,
        on_call_tool=on_call_tool,
    )


async def run_stdio(server: Server) -> None:
    """Serve ``server`` over this process's stdin and stdout until the client closes them."""
    from mcp.server.stdio import stdio_server

    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())
