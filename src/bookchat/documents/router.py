"""Admin documents API: upload (multipart or JSON), list, read, delete and rebuild the book's documents."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from bookchat.auth.dependencies import require_admin
from bookchat.documents import service
from bookchat.documents.preparation import DocumentInput
from bookchat.documents.schemas import DocumentCreate, DocumentOut, DocumentPage, IngestResponse
from bookchat.documents.service import PipelineDep
from bookchat.errors import UnprocessableContent, UnsupportedMediaType
from bookchat.runtime.dependencies import SettingsDep

PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}
MAX_FILES = 100
FILE_FIELDS = ("files", "file")

router = APIRouter(
    prefix="/api/documents",
    tags=["documents"],
    dependencies=[Depends(require_admin)],
    responses={401: PROBLEM, 403: PROBLEM},
)

_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "One or more files (.md, .mdx, .html, .txt, .pdf); the file name is the "
                            "document's path, folders allowed (`module-1/intro.md`).",
                        }
                    },
                }
            },
            "application/json": {"schema": DocumentCreate.model_json_schema()},
        },
    }
}


@router.post(
    "",
    response_model=IngestResponse,
    status_code=status.HTTP_201_CREATED,
    summary="Add or replace documents",
    openapi_extra=_UPLOAD_BODY,
    responses={
        200: {"description": "Every document was already there, unchanged.", "model": IngestResponse},
        409: PROBLEM,
        413: PROBLEM,
        415: PROBLEM,
        422: PROBLEM,
        503: PROBLEM,
    },
)
async def create_documents(
    request: Request, response: Response, pipeline: PipelineDep, settings: SettingsDep
) -> IngestResponse:
    """Ingest documents: a multipart upload of one or more files (field `files`), or one JSON document
    `{source_path, content, title?, url?}`.

    A document with the same path replaces the previous version (its chunks are rewritten, stale ones removed);
    identical content is left alone. Everything is validated before anything is written, and a failure while
    indexing removes what the request wrote. 201 when something was added or changed, 200 when nothing was.
    Too large: 413; a type bookchat does not read: 415; a broken file: 422; another ingestion running: 409.
    """
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    items: list[DocumentInput]
    if media_type == "application/json":
        service.check_size("the request body", int(request.headers.get("content-length") or 0), settings)
        body = await request.body()
        try:
            document = DocumentCreate.model_validate_json(body)
        except ValidationError as exc:
            raise RequestValidationError(exc.errors(include_url=False), body=None) from None
        items = [service.json_input(document.source_path, document.content, document.title, document.url, settings)]
    elif media_type == "multipart/form-data":
        form = await request.form(max_files=MAX_FILES, max_fields=MAX_FILES)
        unknown = sorted({key for key in form if key not in FILE_FIELDS})
        if unknown:
            raise UnprocessableContent(f"unknown form fields: {', '.join(unknown)}; send files in `files`")
        uploads = [value for key in FILE_FIELDS for value in form.getlist(key)]
        if not uploads:
            raise UnprocessableContent("no files: send one or more in the multipart field `files`")
        items = []
        for upload in uploads:
            if not isinstance(upload, UploadFile):
                raise UnprocessableContent("`files` must hold files, not text fields")
            data = await upload.read()
            items.append(service.upload_input(upload.filename, upload.content_type, data, settings))
    else:
        raise UnsupportedMediaType(
            "send documents as multipart/form-data (field `files`) or as application/json "
            "{source_path, content, title?, url?}"
        )
    summary = await service.ingest(pipeline, items)
    if not summary.added and not summary.updated:
        response.status_code = status.HTTP_200_OK
    return service.summary_response(summary)


@router.get("", response_model=DocumentPage, summary="List documents", responses={422: PROBLEM})
async def list_documents(
    pipeline: PipelineDep,
    limit: Annotated[int, Query(ge=1, le=100, description="Documents per page.")] = 20,
    cursor: Annotated[
        str | None, Query(min_length=1, max_length=2100, description="`next_cursor` of the previous page.")
    ] = None,
    prefix: Annotated[
        str | None,
        Query(min_length=1, max_length=1000, pattern=r"^[^\x00]+$", description="Only paths starting with this."),
    ] = None,
) -> DocumentPage:
    """The corpus's documents ordered by path, `limit` at a time; follow `next_cursor` until it is null."""
    return await service.list_documents(pipeline, limit=limit, cursor=cursor, prefix=prefix)


@router.post(
    "/reindex",
    response_model=IngestResponse,
    summary="Rebuild the search index",
    responses={409: PROBLEM, 503: PROBLEM},
)
async def reindex_documents(pipeline: PipelineDep) -> IngestResponse:
    """Recreate the Qdrant collection and re-embed every stored chunk with the configured embedder and BM25
    encoder (after a model change, say). Source files are not needed; to re-read them, run
    `bookchat ingest PATH --reindex`. Runs to completion before answering.
    """
    return service.summary_response(await service.reindex(pipeline))


@router.get("/{document_id}", response_model=DocumentOut, summary="Get a document", responses={404: PROBLEM})
async def get_document(document_id: UUID, pipeline: PipelineDep) -> DocumentOut:
    """One document's record: path, title, URL, status and chunk count."""
    return await service.get_document(pipeline, document_id)


@router.delete(
    "/{document_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a document",
    responses={404: PROBLEM, 409: PROBLEM, 503: PROBLEM},
)
async def delete_document(document_id: UUID, pipeline: PipelineDep) -> Response:
    """Remove a document: its chunks leave the search index first, then its record."""
    await service.delete_document(pipeline, document_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
