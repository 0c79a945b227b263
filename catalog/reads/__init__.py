"""Reads of the catalog, each a page (or a stream of pages) at a time: items (`items`), tags
(`tags`), runs (`runs`) and the per-library overview (`libraries`). Cursors are
`catalog.cursors`' one codec, and a bad one is `BadCursor` wherever it is read."""
