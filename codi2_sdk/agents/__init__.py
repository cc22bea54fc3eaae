"""Agent tools: CoDi-2's generation and in-context editing for LangChain agents (needs langchain-core).

- :func:`codi2_toolkit` gives the tools ``generate_image``, ``generate_audio``, ``edit_image_in_context``,
  ``edit_audio_in_context`` and ``describe_media`` over any Backend;
- :class:`MediaStore` holds the media they pass by reference;
- :class:`ChatCoDi2` is a CoDi-2 backend as a LangChain chat model.
"""

from .chat_model import ChatCoDi2
from .langchain_tools import Codi2Tool, codi2_toolkit
from .store import MediaStore

__all__ = ["ChatCoDi2", "Codi2Tool", "MediaStore", "codi2_toolkit"]
