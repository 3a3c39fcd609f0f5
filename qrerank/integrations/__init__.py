"""Adapters for RAG frameworks, each behind its extra: ``langchain``, ``llamaindex``.

Import the submodule you need (``qrerank.integrations.langchain``); importing it without the
framework installed raises ImportError naming the extra.
"""
