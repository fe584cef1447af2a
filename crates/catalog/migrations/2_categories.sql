-- Categories: a slug, a name, a parent, and the path of slugs from the root
-- (`kitchen/cups`), so that a category's subcategories are the rows whose
-- path starts with its own.
CREATE TABLE categories (
    slug TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    parent TEXT,
    path TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX categories_path ON categories (path);

-- The product's category by slug (filters include subcategories), the
-- category's path, and the product's images (JSON). Filled for products
-- written before by `CatalogStore::backfill_categories`.
ALTER TABLE products ADD COLUMN category_slug TEXT;
ALTER TABLE products ADD COLUMN category_path TEXT;
ALTER TABLE products ADD COLUMN images TEXT;
CREATE INDEX products_category_slug ON products (category_slug, id);
