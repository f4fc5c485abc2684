"""Reading and writing: images, cell tables, exports, model files, session storage."""
