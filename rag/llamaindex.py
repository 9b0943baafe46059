"""newsrag for llama-index users: a retriever, a query engine, and the node fields that let llama-index's
`ChromaVectorStore` open a newsrag collection.

    from rag.llamaindex import NewsragRetriever, NewsragQueryEngine
    nodes = NewsragRetriever(collection="news", k=5).retrieve("Wann traf Lawrow Choe Son-hui?")
    response = NewsragQueryEngine(collection="news").query("When did Lavrov meet Choe Son-hui?")
    print(response.response, response.source_nodes[0].node.metadata["quote"])

The retriever gives newsrag's hybrid retrieval (dense + BM25, filters, one passage per story) to any
llama-index pipeline, e.g. a `RetrieverQueryEngine` with another LLM. The query engine gives newsrag's
verified answer: its text carries the [n] markers, and its source nodes are the cited passages with the
exact quote and whether it was verified.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.response.schema import Response, StreamingResponse
from llama_index.core.llms import CompletionResponse, CompletionResponseGen, CustomLLM, LLMMetadata
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.schema import NodeRelationship, NodeWithScore, QueryBundle, RelatedNodeInfo, TextNode

from rag.types import Answer, Citation, Filters, Passage

# Article metadata a node carries (and that llama-index shows the LLM when it formats a node).
NODE_METADATA = ("doc_id", "title", "source", "date", "url", "lang")


def chunk_node(chunk_id: str, doc_id: str, text: str, meta: dict[str, Any], start: int, end: int) -> TextNode:
    """A newsrag chunk as a llama-index node: its id, its article as the source document, and its span in
    the article text."""
    node = TextNode(id_=chunk_id, text=text, metadata={k: meta[k] for k in NODE_METADATA if meta.get(k) not in (None, "")},
                    start_char_idx=start, end_char_idx=end,
                    excluded_embed_metadata_keys=list(NODE_METADATA), excluded_llm_metadata_keys=["doc_id", "url"])
    node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=doc_id)
    return node


def chroma_node_fields(chunk_id: str, doc_id: str, meta: dict[str, Any], start: int, end: int) -> dict[str, Any]:
    """The metadata keys llama-index's ChromaVectorStore reads (`_node_content`, `_node_type`, `document_id`,
    `doc_id`, `ref_doc_id`), written beside newsrag's own so `VectorStoreIndex.from_vector_store` takes its
    normal path and `delete(ref_doc_id)` removes an article's chunks. The text stays in Chroma's document."""
    from llama_index.core.vector_stores.utils import node_to_metadata_dict

    node = chunk_node(chunk_id, doc_id, "", meta, start, end)
    fields = node_to_metadata_dict(node, remove_text=True, flat_metadata=False)
    return {k: v for k, v in fields.items() if k.startswith("_") or k in ("document_id", "doc_id", "ref_doc_id")}


def passage_node(p: Passage) -> NodeWithScore:
    start = int(p.metadata.get("start", 0) or 0)
    return NodeWithScore(node=chunk_node(p.chunk_id, p.doc_id, p.text, p.metadata, start, start + len(p.text)),
                         score=p.score)


def citation_node(c: Citation) -> NodeWithScore:
    meta = {"doc_id": c.doc_id, "title": c.title, "source": c.source, "date": c.date or "", "url": c.url}
    node = chunk_node(c.chunk_id, c.doc_id, c.passage or c.quote, meta, c.start, c.end)
    node.metadata.update({"n": c.n, "quote": c.quote, "verified": c.verified})
    return NodeWithScore(node=node, score=c.score)


class NewsragRetriever(BaseRetriever):
    """newsrag's hybrid retrieval as a llama-index retriever: one passage per article or story, best first."""

    def __init__(self, collection: str | None = None, k: int = 5, filters: Filters | dict | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.collection, self.k, self.filters = collection, k, filters

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        from rag.retrieval import retrieve

        return [passage_node(p) for p in retrieve(query_bundle.query_str, k=self.k, collection=self.collection,
                                                  filters=self.filters)]


class NewsragQueryEngine(BaseQueryEngine):
    """newsrag's verified answer as a llama-index query engine (`streaming=True` streams its text)."""

    def __init__(self, collection: str | None = None, llm: str | None = None, filters: Filters | dict | None = None,
                 streaming: bool = False, **kwargs: Any) -> None:
        super().__init__(callback_manager=kwargs.pop("callback_manager", None))
        self.collection, self.llm, self.filters, self.streaming = collection, llm, filters, streaming

    def _query(self, query_bundle: QueryBundle) -> Response | StreamingResponse:
        from rag.answer import ask_stream

        stream = ask_stream(query_bundle.query_str, collection=self.collection, llm=self.llm, filters=self.filters)
        if not self.streaming:
            final = next(item for item in stream if isinstance(item, Answer))
            return Response(response=final.text, source_nodes=[citation_node(c) for c in final.citations],
                            metadata=answer_metadata(final))
        # The cited passages are known only at the end: they are added to source_nodes (and metadata filled)
        # once response_gen is exhausted.
        response = StreamingResponse(response_gen=iter(()), source_nodes=[], metadata={})

        def pieces() -> Iterator[str]:
            for item in stream:
                if isinstance(item, Answer):
                    response.source_nodes.extend(citation_node(c) for c in item.citations)
                    response.metadata.update(answer_metadata(item))
                    response.response_txt = item.text
                else:
                    yield item

        response.response_gen = pieces()
        return response

    async def _aquery(self, query_bundle: QueryBundle) -> Response | StreamingResponse:
        return self._query(query_bundle)

    def _get_prompt_modules(self) -> dict[str, Any]:
        return {}


class NewsragLLM(CustomLLM):
    """newsrag's configured LLM (the local llama.cpp child by default, or the OpenAI-compatible server) as a
    llama-index LLM, for apps that want llama-index's own synthesizers on top of newsrag."""

    provider: str | None = None

    @property
    def metadata(self) -> LLMMetadata:
        from rag.settings import get_settings

        settings = get_settings()
        return LLMMetadata(context_window=settings.llm_context, num_output=settings.llm_max_tokens,
                           model_name=f"newsrag:{self.provider or settings.llm_provider}")

    def _pieces(self, prompt: str) -> Iterator[str]:
        from rag.errors import LLMError
        from rag.llm import get_chat_model, stream_with_timeout
        from rag.settings import get_settings

        settings = get_settings()
        model = get_chat_model(self.provider or settings.llm_provider, settings)
        if model is None:
            raise LLMError("the extractive provider has no LLM to complete text with")
        yield from stream_with_timeout(model, [{"role": "user", "content": prompt}], max_tokens=settings.llm_max_tokens,
                                       temperature=settings.llm_temperature, timeout=settings.llm_timeout)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text="".join(self._pieces(prompt)))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        text = ""
        for piece in self._pieces(prompt):
            text += piece
            yield CompletionResponse(text=text, delta=piece)


def answer_metadata(answer: Answer) -> dict[str, Any]:
    return {"answered": answer.answered, "notice": answer.notice, "provider": answer.provider,
            "language": answer.language, "unsupported": answer.unsupported}
