"""Generated from the zod schemas by `npm run gen`; never edited by hand."""
