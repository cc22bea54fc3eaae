"""Converters between the SDK's parts and other ecosystems' content formats (plain dicts, no extra deps).

- :mod:`.langchain`: LangChain v1 content blocks (``{"type": "image", "base64": ..., "mime_type": ...}``);
- :mod:`.openai`: OpenAI chat content parts (``image_url`` data URLs, ``input_audio`` wav/mp3);
- :mod:`.mcp`: MCP content (``{"type": "image", "data": ..., "mimeType": "image/png"}``), always encoded
  PNG and WAV.
"""

from .langchain_blocks import from_langchain_blocks, to_langchain_blocks
from .mcp_content import from_mcp_content, to_mcp_content
from .openai_parts import from_openai_parts, to_openai_parts

__all__ = [
    "from_langchain_blocks",
    "from_mcp_content",
    "from_openai_parts",
    "to_langchain_blocks",
    "to_mcp_content",
    "to_openai_parts",
]
