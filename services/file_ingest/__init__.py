"""file-ingest: the OpenAI Files and Uploads APIs, streaming adapter files into the blob store."""
