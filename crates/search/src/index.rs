//! The tantivy index: its schema, its text analysis, the queries built from
//! a [`SearchRequest`], and the category facet collector.
//!
//! User text never reaches tantivy's query parser: it is cut into terms by
//! the same analyser the documents were indexed with, and every term becomes
//! a small query built here, so no input is syntax and none can fail to
//! parse.

use crate::domain::{
    typo_tolerance, Facets, PriceBucket, ProductDoc, SearchHit, SearchPrice, SearchRequest,
    SearchResults, SearchSort, Suggestion, Suggestions, MAX_OFFSET, MAX_QUERY_TERMS, PRICE_BUCKETS,
};
use mercato_contracts::types::Rating;
use mercato_kernel::ApiError;
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::path::Path;
use tantivy::collector::{Collector, Count, SegmentCollector, TopDocs};
use tantivy::columnar::StrColumn;
use tantivy::directory::MmapDirectory;
use tantivy::query::{
    AllQuery, BooleanQuery, BoostQuery, FuzzyTermQuery, Occur, Query, RangeQuery, TermQuery,
};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, FAST, INDEXED, STORED,
    STRING,
};
use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer,
};
use tantivy::{
    DocAddress, DocId, Index, IndexReader, IndexWriter, Order, ReloadPolicy, Score, SegmentOrdinal,
    SegmentReader, TantivyDocument, Term,
};

/// Name under which [`analyzer`] is registered with the index.
pub const TEXT_ANALYZER: &str = "mercato_text";

/// How the title and description are cut into terms, at indexing and at
/// query time alike: words, lower-cased, accents folded ("Café" finds
/// "cafe"), absurdly long tokens dropped.
pub fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build()
}

/// The terms of a query text, in order, as the index knows them.
pub fn terms(text: &str) -> Vec<String> {
    let mut analyzer = analyzer();
    let mut stream = analyzer.token_stream(text);
    let mut out = Vec::new();
    while stream.advance() {
        out.push(stream.token().text.clone());
    }
    out
}

/// The fields of a product document.
#[derive(Debug, Clone, Copy)]
pub struct Fields {
    pub product_id: Field,
    pub title: Field,
    pub description: Field,
    pub category: Field,
    /// The slugs of the category and the categories above it.
    pub category_path: Field,
    pub price: Field,
    pub currency: Field,
    pub seller_id: Field,
    pub skus: Field,
    pub available: Field,
    pub created_at: Field,
    /// The mean rating of its published reviews, and how many there are.
    pub rating_average: Field,
    pub rating_count: Field,
    /// Its variants' attributes as `name=value` terms.
    pub attributes: Field,
}

/// At most this many categories among the suggestions.
const MAX_CATEGORY_SUGGESTIONS: usize = 3;

/// Fast-field names read by collectors.
const CATEGORY: &str = "category";
const CREATED_AT: &str = "created_at";
const PRICE: &str = "price";
const RATING: &str = "rating_average";
const ATTRIBUTES: &str = "attributes";

pub fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text = |stored: bool| {
        let options = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(TEXT_ANALYZER)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        );
        if stored {
            options.set_stored()
        } else {
            options
        }
    };
    let fields = Fields {
        product_id: b.add_text_field("product_id", STRING | STORED),
        title: b.add_text_field("title", text(true)),
        description: b.add_text_field("description", text(false)),
        category: b.add_text_field(CATEGORY, STRING | STORED | FAST),
        category_path: b.add_text_field("category_path", STRING),
        price: b.add_i64_field(PRICE, INDEXED | FAST | STORED),
        currency: b.add_text_field("currency", STRING | STORED),
        seller_id: b.add_text_field("seller_id", STRING | STORED),
        skus: b.add_text_field("skus", STRING),
        available: b.add_i64_field("available", INDEXED | FAST | STORED),
        created_at: b.add_i64_field(CREATED_AT, FAST | STORED),
        rating_average: b.add_f64_field(RATING, INDEXED | FAST | STORED),
        rating_count: b.add_i64_field("rating_count", FAST | STORED),
        attributes: b.add_text_field(ATTRIBUTES, STRING | FAST),
    };
    (b.build(), fields)
}

/// An open index with its reader and (single) writer.
pub struct SearchIndex {
    pub index: Index,
    pub reader: IndexReader,
    pub fields: Fields,
}

/// Writers get this much memory for buffered documents before they flush a
/// segment; bulk loads flush by themselves, commits flush what is left.
const WRITER_MEMORY: usize = 32_000_000;

impl SearchIndex {
    /// Opens the index in `dir`, creating it when empty. Fails when the
    /// directory holds an index of another schema: the caller rebuilds.
    pub fn open(dir: &Path) -> anyhow::Result<SearchIndex> {
        std::fs::create_dir_all(dir)?;
        let (schema, fields) = schema();
        let index = Index::open_or_create(MmapDirectory::open(dir)?, schema)?;
        Self::with_index(index, fields)
    }

    /// An index in memory (tests).
    pub fn in_ram() -> anyhow::Result<SearchIndex> {
        let (schema, fields) = schema();
        Self::with_index(Index::create_in_ram(schema), fields)
    }

    fn with_index(index: Index, fields: Fields) -> anyhow::Result<SearchIndex> {
        index.tokenizers().register(TEXT_ANALYZER, analyzer());
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(SearchIndex {
            index,
            reader,
            fields,
        })
    }

    pub fn writer(&self) -> anyhow::Result<IndexWriter> {
        Ok(self.index.writer_with_num_threads(1, WRITER_MEMORY)?)
    }

    pub fn id_term(&self, product_id: uuid::Uuid) -> Term {
        Term::from_field_text(self.fields.product_id, &product_id.to_string())
    }

    /// The document of a product with `available` units in stock and
    /// `rating` from its reviews.
    pub fn document(&self, p: &ProductDoc, available: i64, rating: &Rating) -> TantivyDocument {
        let f = &self.fields;
        let mut d = TantivyDocument::default();
        d.add_text(f.product_id, p.product_id.to_string());
        d.add_text(f.title, &p.title);
        d.add_text(f.description, &p.description);
        d.add_text(f.category, &p.category);
        // Products of events written before categories had paths: their
        // own category's slug.
        if p.category_path.is_empty() {
            d.add_text(f.category_path, mercato_kernel::slug::slugify(&p.category));
        }
        for slug in &p.category_path {
            d.add_text(f.category_path, slug);
        }
        d.add_i64(f.price, p.price.amount);
        d.add_text(f.currency, p.price.currency.as_str());
        d.add_text(f.seller_id, p.seller_id.to_string());
        for sku in &p.skus {
            d.add_text(f.skus, sku);
        }
        d.add_i64(f.available, available.max(0));
        d.add_i64(f.created_at, p.created_at.timestamp_micros());
        d.add_f64(f.rating_average, rating.average);
        d.add_i64(f.rating_count, rating.count);
        for attribute in &p.attributes {
            d.add_text(f.attributes, attribute);
        }
        d
    }

    /// Runs a search on the last committed state.
    pub fn search(&self, req: &SearchRequest) -> Result<SearchResults, ApiError> {
        let searcher = self.reader.searcher();
        let plan = QueryPlan::new(&self.fields, req)?;
        let internal = |e: tantivy::TantivyError| ApiError::internal(format!("search: {e}"));
        let query = plan.whole();
        let inline = plan.category.is_none();
        let counts = || (Count, FacetCounts, CategoryCounts { enabled: inline });
        let page = TopDocs::with_limit(req.limit.max(1)).and_offset(req.offset);
        let (addresses, (total, facets, categories)) = match req.sort {
            // Past the deepest page: the counts, no items.
            _ if req.offset > MAX_OFFSET => (
                Vec::new(),
                searcher.search(&query, &counts()).map_err(internal)?,
            ),
            SearchSort::Relevance => {
                let top = page.tweak_score(|segment: &SegmentReader| {
                    // Ties in relevance go to the newest product.
                    let created = segment.fast_fields().i64(CREATED_AT).ok();
                    move |doc: DocId, score: Score| {
                        let at = created.as_ref().and_then(|c| c.first(doc)).unwrap_or(0);
                        (score, at)
                    }
                });
                let (hits, rest) = searcher
                    .search(&query, &(top, counts()))
                    .map_err(internal)?;
                (hits.into_iter().map(|(_, a)| a).collect::<Vec<_>>(), rest)
            }
            SearchSort::PriceAsc | SearchSort::PriceDesc => {
                let order = if req.sort == SearchSort::PriceAsc {
                    Order::Asc
                } else {
                    Order::Desc
                };
                let top = page.order_by_fast_field::<i64>(PRICE, order);
                let (hits, rest) = searcher
                    .search(&query, &(top, counts()))
                    .map_err(internal)?;
                (hits.into_iter().map(|(_, a)| a).collect(), rest)
            }
            SearchSort::Newest => {
                let top = page.order_by_fast_field::<i64>(CREATED_AT, Order::Desc);
                let (hits, rest) = searcher
                    .search(&query, &(top, counts()))
                    .map_err(internal)?;
                (hits.into_iter().map(|(_, a)| a).collect(), rest)
            }
            SearchSort::Rating => {
                let top = page.order_by_fast_field::<f64>(RATING, Order::Desc);
                let (hits, rest) = searcher
                    .search(&query, &(top, counts()))
                    .map_err(internal)?;
                (hits.into_iter().map(|(_, a)| a).collect(), rest)
            }
        };
        // Categories are counted over everything but the category filter:
        // in the same pass when there is none.
        let category = if inline {
            categories
        } else {
            searcher
                .search(&plan.without_category(), &CategoryCounts { enabled: true })
                .map_err(internal)?
        };
        let mut items = Vec::with_capacity(addresses.len());
        for address in addresses {
            items.push(self.hit(&searcher, address).map_err(internal)?);
        }
        let seen = req.offset + items.len();
        let next_cursor = (seen < total && !items.is_empty() && seen <= MAX_OFFSET)
            .then(|| mercato_kernel::page::encode_cursor(&seen.to_string()));
        Ok(SearchResults {
            items,
            total: total as u64,
            facets: Facets {
                category,
                price: facets.price_buckets(),
                rating: facets.rating_counts(),
                attributes: facets.attributes,
            },
            next_cursor,
        })
    }

    /// Category names (as products carry them) whose slug begins with the
    /// slug of `text`, from the category field's terms.
    fn categories_from(
        &self,
        searcher: &tantivy::Searcher,
        text: &str,
    ) -> tantivy::Result<Vec<String>> {
        let prefix = mercato_kernel::slug::slugify(text);
        let mut out = std::collections::BTreeSet::new();
        if prefix.is_empty() {
            return Ok(Vec::new());
        }
        for segment in searcher.segment_readers() {
            let terms = segment.inverted_index(self.fields.category)?;
            let mut stream = terms.terms().stream()?;
            while stream.advance() && out.len() < MAX_CATEGORY_SUGGESTIONS {
                if let Ok(name) = std::str::from_utf8(stream.key()) {
                    if mercato_kernel::slug::slugify(name).starts_with(&prefix) {
                        out.insert(name.to_owned());
                    }
                }
            }
        }
        Ok(out.into_iter().collect())
    }

    /// The categories (by how many products of them match) and the
    /// products whose words begin like `text`: at most `limit` of each.
    pub fn suggest(&self, text: &str, limit: usize) -> Result<Suggestions, ApiError> {
        let internal = |e: tantivy::TantivyError| ApiError::internal(format!("suggest: {e}"));
        let searcher = self.reader.searcher();
        let mut words = terms(text);
        if words.is_empty() {
            return Ok(Suggestions::default());
        }
        words.truncate(MAX_QUERY_TERMS);
        // Titles only: every word, the last one also as a beginning.
        let last = words.len() - 1;
        let query = BooleanQuery::new(
            words
                .iter()
                .enumerate()
                .map(|(i, w)| (Occur::Must, title_query(&self.fields, w, i == last)))
                .collect(),
        );
        let top = searcher
            .search(&query, &TopDocs::with_limit(limit.max(1)).order_by_score())
            .map_err(internal)?;
        // Categories whose name begins like the text.
        let names = self.categories_from(&searcher, text).map_err(internal)?;
        let mut suggestions: Vec<Suggestion> = Vec::new();
        for name in names {
            let slug = mercato_kernel::slug::slugify(&name);
            if suggestions.len() == MAX_CATEGORY_SUGGESTIONS
                || suggestions
                    .iter()
                    .any(|s| mercato_kernel::slug::slugify(&s.text) == slug)
            {
                continue;
            }
            suggestions.push(Suggestion {
                text: name,
                kind: "category".into(),
                product_id: None,
            });
        }
        for (_, address) in top {
            if suggestions.len() >= limit {
                break;
            }
            let hit = self.hit(&searcher, address).map_err(internal)?;
            suggestions.push(Suggestion {
                text: hit.title,
                kind: "product".into(),
                product_id: Some(hit.product_id),
            });
        }
        Ok(Suggestions { suggestions })
    }

    fn hit(&self, searcher: &tantivy::Searcher, address: DocAddress) -> tantivy::Result<SearchHit> {
        let f = &self.fields;
        let doc: TantivyDocument = searcher.doc(address)?;
        let text = |field| {
            doc.get_first(field)
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        };
        let int = |field| doc.get_first(field).and_then(|v| v.as_i64()).unwrap_or(0);
        let product_id = uuid::Uuid::parse_str(&text(f.product_id))
            .map_err(|e| tantivy::TantivyError::InternalError(format!("stored product id: {e}")))?;
        let available = int(f.available);
        Ok(SearchHit {
            product_id,
            title: text(f.title),
            category: text(f.category),
            price: SearchPrice {
                amount: int(f.price),
                currency: text(f.currency),
            },
            in_stock: available > 0,
            available,
            rating: Rating {
                average: doc
                    .get_first(f.rating_average)
                    .and_then(|v| v.as_f64())
                    .unwrap_or(0.0),
                count: int(f.rating_count),
            },
        })
    }
}

/// The queries a search runs: the text and price constraints, and the
/// category filter apart, because facet counts ignore it.
pub struct QueryPlan {
    /// Text and price clauses; empty means "everything".
    clauses: Vec<Box<dyn Query>>,
    category: Option<Term>,
}

impl QueryPlan {
    pub fn new(fields: &Fields, req: &SearchRequest) -> Result<QueryPlan, ApiError> {
        // Words past the first MAX_QUERY_TERMS are left out; the last word
        // is completed only when it is the last one typed.
        let mut terms = terms(&req.text);
        let typed = terms.len();
        terms.truncate(MAX_QUERY_TERMS);
        let mut clauses = Vec::new();
        let last = typed.saturating_sub(1);
        for (i, term) in terms.iter().enumerate() {
            clauses.push(term_query(fields, term, i == last));
        }
        if req.min_price.is_some() || req.max_price.is_some() {
            let bound = |v: i64| Bound::Included(Term::from_field_i64(fields.price, v));
            clauses.push(Box::new(RangeQuery::new(
                bound(req.min_price.unwrap_or(0)),
                bound(req.max_price.unwrap_or(i64::MAX)),
            )));
        }
        if req.in_stock {
            clauses.push(Box::new(RangeQuery::new(
                Bound::Included(Term::from_field_i64(fields.available, 1)),
                Bound::Unbounded,
            )));
        }
        if let Some(min) = req.min_rating {
            clauses.push(Box::new(RangeQuery::new(
                Bound::Included(Term::from_field_f64(fields.rating_average, min)),
                Bound::Unbounded,
            )));
        }
        for attribute in &req.attributes {
            clauses.push(Box::new(TermQuery::new(
                Term::from_field_text(fields.attributes, attribute),
                IndexRecordOption::Basic,
            )));
        }
        Ok(QueryPlan {
            clauses,
            // The category or any under it.
            category: req.category.as_ref().map(|c| {
                Term::from_field_text(fields.category_path, &mercato_kernel::slug::slugify(c))
            }),
        })
    }

    /// Everything but the category filter: what facets are counted over.
    pub fn without_category(&self) -> Box<dyn Query> {
        if self.clauses.is_empty() {
            return Box::new(AllQuery);
        }
        Box::new(BooleanQuery::new(
            self.clauses
                .iter()
                .map(|q| (Occur::Must, q.box_clone()))
                .collect(),
        ))
    }

    /// The whole query: every clause and the category filter.
    pub fn whole(&self) -> Box<dyn Query> {
        self.category_filter()
            .unwrap_or_else(|| self.without_category())
    }

    /// The whole query, when there is a category filter.
    pub fn category_filter(&self) -> Option<Box<dyn Query>> {
        let category = self.category.clone()?;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![(
            Occur::Must,
            Box::new(TermQuery::new(category, IndexRecordOption::Basic)),
        )];
        clauses.extend(self.clauses.iter().map(|q| (Occur::Must, q.box_clone())));
        Some(Box::new(BooleanQuery::new(clauses)))
    }
}

/// How much more a word in the title counts than one in the description.
const TITLE_BOOST: Score = 2.0;
/// An exact word outranks a typo or a prefix of the same word.
const EXACT_BOOST: Score = 3.0;

/// One query term: the exact word (boosted), a word within its typo
/// tolerance, and for the last term, which the user may still be typing,
/// any word it begins; in the title or the description.
pub fn term_query(fields: &Fields, term: &str, is_last: bool) -> Box<dyn Query> {
    let distance = typo_tolerance(term);
    let mut alternatives: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    for (field, boost) in [(fields.title, TITLE_BOOST), (fields.description, 1.0)] {
        let t = Term::from_field_text(field, term);
        let mut add = |q: Box<dyn Query>, b: Score| {
            alternatives.push((Occur::Should, Box::new(BoostQuery::new(q, boost * b))));
        };
        add(
            Box::new(TermQuery::new(t.clone(), IndexRecordOption::WithFreqs)),
            EXACT_BOOST,
        );
        if distance > 0 {
            add(
                Box::new(FuzzyTermQuery::new(t.clone(), distance, true)),
                1.0,
            );
        }
        if is_last {
            add(Box::new(FuzzyTermQuery::new_prefix(t, 0, true)), 1.0);
        }
    }
    Box::new(BooleanQuery::new(alternatives))
}

/// A word in the title: exactly, within its typo tolerance, and as the
/// beginning of a longer word when it is the last one typed.
fn title_query(fields: &Fields, term: &str, is_last: bool) -> Box<dyn Query> {
    let t = Term::from_field_text(fields.title, term);
    let mut alternatives: Vec<(Occur, Box<dyn Query>)> = vec![(
        Occur::Should,
        Box::new(BoostQuery::new(
            Box::new(TermQuery::new(t.clone(), IndexRecordOption::WithFreqs)),
            EXACT_BOOST,
        )),
    )];
    let distance = typo_tolerance(term);
    if distance > 0 {
        alternatives.push((
            Occur::Should,
            Box::new(FuzzyTermQuery::new(t.clone(), distance, true)),
        ));
    }
    if is_last {
        alternatives.push((
            Occur::Should,
            Box::new(FuzzyTermQuery::new_prefix(t, 0, true)),
        ));
    }
    Box::new(BooleanQuery::new(alternatives))
}

/// At most this many values of one attribute in the facets: the most
/// frequent.
const MAX_ATTRIBUTE_VALUES: usize = 20;

/// Counts matching documents per category, from the category fast field.
pub struct CategoryCounts {
    /// Off: counts nothing (its categories come from another pass).
    pub enabled: bool,
}

pub struct SegmentCategoryCounts {
    column: Option<StrColumn>,
    by_ord: HashMap<u64, u64>,
}

impl Collector for CategoryCounts {
    type Fruit = BTreeMap<String, u64>;
    type Child = SegmentCategoryCounts;

    fn for_segment(
        &self,
        _: SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<SegmentCategoryCounts> {
        Ok(SegmentCategoryCounts {
            column: if self.enabled {
                segment.fast_fields().str(CATEGORY)?
            } else {
                None
            },
            by_ord: HashMap::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(
        &self,
        segments: Vec<BTreeMap<String, u64>>,
    ) -> tantivy::Result<BTreeMap<String, u64>> {
        let mut out = BTreeMap::new();
        for segment in segments {
            for (name, n) in segment {
                *out.entry(name).or_insert(0) += n;
            }
        }
        Ok(out)
    }
}

impl SegmentCollector for SegmentCategoryCounts {
    type Fruit = BTreeMap<String, u64>;

    fn collect(&mut self, doc: DocId, _: Score) {
        if let Some(column) = &self.column {
            for ord in column.term_ords(doc) {
                *self.by_ord.entry(ord).or_insert(0) += 1;
            }
        }
    }

    fn harvest(self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        let Some(column) = self.column else {
            return out;
        };
        let mut name = String::new();
        for (ord, n) in self.by_ord {
            name.clear();
            if let Ok(true) = column.ord_to_str(ord, &mut name) {
                out.insert(name.clone(), n);
            }
        }
        out
    }
}

/// Counts matching documents by price bucket, by rating and by attribute,
/// from fast fields.
pub struct FacetCounts;

/// What [`FacetCounts`] counted.
#[derive(Debug, Default)]
pub struct FacetFruit {
    prices: [u64; PRICE_BUCKETS.len()],
    /// Products rated at least 1, 2, 3, 4.
    ratings: [u64; 4],
    pub attributes: BTreeMap<String, BTreeMap<String, u64>>,
}

impl FacetFruit {
    fn merge(&mut self, other: FacetFruit) {
        for (a, b) in self.prices.iter_mut().zip(other.prices) {
            *a += b;
        }
        for (a, b) in self.ratings.iter_mut().zip(other.ratings) {
            *a += b;
        }
        for (name, values) in other.attributes {
            let mine = self.attributes.entry(name).or_default();
            for (value, n) in values {
                *mine.entry(value).or_insert(0) += n;
            }
        }
    }

    pub fn price_buckets(&self) -> Vec<PriceBucket> {
        PRICE_BUCKETS
            .iter()
            .enumerate()
            .map(|(i, from)| PriceBucket {
                from: *from,
                to: PRICE_BUCKETS.get(i + 1).copied(),
                count: self.prices[i],
            })
            .collect()
    }

    pub fn rating_counts(&self) -> BTreeMap<String, u64> {
        self.ratings
            .iter()
            .enumerate()
            .map(|(i, n)| ((i + 1).to_string(), *n))
            .collect()
    }
}

pub struct SegmentFacetCounts {
    price: Option<tantivy::columnar::Column<i64>>,
    rating: Option<tantivy::columnar::Column<f64>>,
    attributes: Option<StrColumn>,
    by_ord: HashMap<u64, u64>,
    fruit: FacetFruit,
}

impl Collector for FacetCounts {
    type Fruit = FacetFruit;
    type Child = SegmentFacetCounts;

    fn for_segment(
        &self,
        _: SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<SegmentFacetCounts> {
        let fast = segment.fast_fields();
        Ok(SegmentFacetCounts {
            price: fast.i64(PRICE).ok(),
            rating: fast.f64(RATING).ok(),
            attributes: fast.str(ATTRIBUTES)?,
            by_ord: HashMap::new(),
            fruit: FacetFruit::default(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, segments: Vec<FacetFruit>) -> tantivy::Result<FacetFruit> {
        let mut out = FacetFruit::default();
        for segment in segments {
            out.merge(segment);
        }
        // A model number or an ISBN would list every product: the most
        // frequent values only.
        for values in out.attributes.values_mut() {
            if values.len() > MAX_ATTRIBUTE_VALUES {
                let mut ranked: Vec<(String, u64)> = std::mem::take(values).into_iter().collect();
                ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                ranked.truncate(MAX_ATTRIBUTE_VALUES);
                *values = ranked.into_iter().collect();
            }
        }
        Ok(out)
    }
}

impl SegmentCollector for SegmentFacetCounts {
    type Fruit = FacetFruit;

    fn collect(&mut self, doc: DocId, _: Score) {
        if let Some(price) = self.price.as_ref().and_then(|c| c.first(doc)) {
            let bucket = PRICE_BUCKETS
                .iter()
                .rposition(|from| price >= *from)
                .unwrap_or(0);
            self.fruit.prices[bucket] += 1;
        }
        if let Some(rating) = self.rating.as_ref().and_then(|c| c.first(doc)) {
            for (i, n) in self.fruit.ratings.iter_mut().enumerate() {
                if rating >= (i + 1) as f64 {
                    *n += 1;
                }
            }
        }
        if let Some(column) = &self.attributes {
            for ord in column.term_ords(doc) {
                *self.by_ord.entry(ord).or_insert(0) += 1;
            }
        }
    }

    fn harvest(mut self) -> FacetFruit {
        if let Some(column) = &self.attributes {
            let mut term = String::new();
            for (ord, n) in self.by_ord {
                term.clear();
                if let Ok(true) = column.ord_to_str(ord, &mut term) {
                    if let Some((name, value)) = term.split_once('=') {
                        *self
                            .fruit
                            .attributes
                            .entry(format!("attr.{name}"))
                            .or_default()
                            .entry(value.to_owned())
                            .or_insert(0) += n;
                    }
                }
            }
        }
        self.fruit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RawSearchQuery;
    use chrono::{TimeZone, Utc};
    use mercato_kernel::{Currency, Money};
    use uuid::Uuid;

    fn product(n: i64, title: &str, description: &str, category: &str, price: i64) -> ProductDoc {
        ProductDoc {
            product_id: Uuid::now_v7(),
            seller_id: Uuid::now_v7(),
            title: title.into(),
            description: description.into(),
            category: category.into(),
            category_path: Vec::new(),
            price: Money::new(price, Currency::parse("EUR").expect("currency")),
            skus: vec![format!("SKU-{n}")],
            created_at: Utc
                .timestamp_opt(1_700_000_000 + n, 0)
                .single()
                .expect("time"),
            attributes: Vec::new(),
        }
    }

    struct Fixture {
        index: SearchIndex,
        ids: Vec<Uuid>,
    }

    fn fixture() -> Fixture {
        let index = SearchIndex::in_ram().expect("index");
        let mut writer = index.writer().expect("writer");
        let products = [
            product(1, "Blue ceramic mug", "Holds tea", "kitchen", 1299),
            product(
                2,
                "Stainless kettle",
                "Boils water for tea",
                "kitchen",
                3999,
            ),
            product(3, "Wool blanket", "Warm and soft", "home", 5999),
            product(4, "Mechanical keyboard", "Clicky keys", "electronics", 8999),
            product(5, "Café table", "Small round table", "home", 12999),
        ];
        let colors = ["blue", "silver", "blue", "black", ""];
        let mut ids = Vec::new();
        for (n, (p, color)) in products.iter().zip(colors).enumerate() {
            ids.push(p.product_id);
            let mut p = p.clone();
            if !color.is_empty() {
                p.attributes = vec![format!("color={color}")];
            }
            // Rated by position: 1 for the mug to 5 for the table.
            let rating = Rating {
                average: (n + 1) as f64,
                count: 1,
            };
            writer
                .add_document(index.document(&p, p.price.amount % 7, &rating))
                .expect("add");
        }
        writer.commit().expect("commit");
        index.reader.reload().expect("reload");
        Fixture { index, ids }
    }

    fn search(f: &Fixture, pairs: &[(&str, &str)]) -> SearchResults {
        let mut raw = RawSearchQuery::default();
        for (k, v) in pairs {
            let v = Some((*v).to_owned());
            match *k {
                "q" => raw.q = v,
                "category" => raw.category = v,
                "min_price" => raw.min_price = v,
                "max_price" => raw.max_price = v,
                "limit" => raw.limit = v,
                "sort" => raw.sort = v,
                "in_stock" => raw.in_stock = v,
                "min_rating" => raw.min_rating = v,
                "cursor" => raw.cursor = v,
                _ => unreachable!(),
            }
        }
        f.index
            .search(&raw.validate().expect("valid request"))
            .expect("search runs")
    }

    fn titles(r: &SearchResults) -> Vec<&str> {
        r.items.iter().map(|h| h.title.as_str()).collect()
    }

    #[test]
    fn stock_rating_and_attributes_filter() {
        let f = fixture();
        let r = search(&f, &[("in_stock", "true"), ("sort", "price_asc")]);
        assert_eq!(
            titles(&r),
            [
                "Blue ceramic mug",
                "Stainless kettle",
                "Mechanical keyboard"
            ]
        );
        let r = search(&f, &[("min_rating", "4"), ("sort", "rating")]);
        assert_eq!(titles(&r), ["Café table", "Mechanical keyboard"]);
        let mut req = RawSearchQuery::default().validate().expect("valid");
        req.attributes = vec!["color=blue".into()];
        let r = f.index.search(&req).expect("search");
        assert_eq!(r.total, 2);
        assert_eq!(
            r.facets.attributes["attr.color"],
            BTreeMap::from([("blue".to_owned(), 2)])
        );
    }

    #[test]
    fn sorts_facets_and_pages() {
        let f = fixture();
        let asc = [
            "Blue ceramic mug",
            "Stainless kettle",
            "Wool blanket",
            "Mechanical keyboard",
            "Café table",
        ];
        assert_eq!(titles(&search(&f, &[("sort", "price_asc")])), asc);
        let mut desc = asc;
        desc.reverse();
        assert_eq!(titles(&search(&f, &[("sort", "price_desc")])), desc);
        assert_eq!(titles(&search(&f, &[("sort", "newest")]))[0], "Café table");
        assert_eq!(titles(&search(&f, &[("sort", "rating")]))[0], "Café table");
        let r = search(&f, &[]);
        let counts: Vec<u64> = r.facets.price.iter().map(|b| b.count).collect();
        assert_eq!(counts, [0, 1, 1, 2, 1]);
        assert_eq!((r.facets.price[0].from, r.facets.price[4].to), (0, None));
        assert_eq!(
            r.facets.rating,
            BTreeMap::from([
                ("1".into(), 5),
                ("2".into(), 4),
                ("3".into(), 3),
                ("4".into(), 2)
            ])
        );
        assert_eq!(
            r.facets.attributes["attr.color"],
            BTreeMap::from([
                ("black".into(), 1),
                ("blue".into(), 2),
                ("silver".into(), 1)
            ])
        );
        // Pages of two, by the cursor each page gives.
        let mut seen = Vec::new();
        let mut cursor = String::new();
        for _ in 0..3 {
            let page = search(
                &f,
                &[("sort", "price_asc"), ("limit", "2"), ("cursor", &cursor)],
            );
            seen.extend(titles(&page).into_iter().map(str::to_owned));
            match page.next_cursor {
                Some(next) => cursor = next,
                None => break,
            }
        }
        assert_eq!(seen, asc);
    }

    #[test]
    fn suggestions_complete_categories_and_titles() {
        let f = fixture();
        let s = f.index.suggest("Kitc", 10).expect("suggest");
        assert_eq!(s.suggestions[0].text, "kitchen", "{s:?}");
        assert_eq!(s.suggestions[0].kind, "category");
        // Titles only, not descriptions; punctuation alone suggests nothing.
        let s = f.index.suggest("tea", 10).expect("suggest");
        assert!(s.suggestions.is_empty(), "{s:?}");
        let s = f.index.suggest("kett", 10).expect("suggest");
        assert!(s
            .suggestions
            .iter()
            .any(|x| x.text == "Stainless kettle" && x.product_id.is_some()));
        assert!(f
            .index
            .suggest("!!!", 10)
            .expect("suggest")
            .suggestions
            .is_empty());
        // A typo and an unfinished word still find it.
        let s = f.index.suggest("keybaord", 10).expect("suggest");
        assert!(
            s.suggestions
                .iter()
                .any(|x| x.text == "Mechanical keyboard"),
            "{s:?}"
        );
        let s = f.index.suggest("mecha", 10).expect("suggest");
        assert!(
            s.suggestions
                .iter()
                .any(|x| x.text == "Mechanical keyboard"),
            "{s:?}"
        );
    }

    #[test]
    fn query_text_is_analysed_like_documents() {
        assert_eq!(terms("  Café-Table, MUG!"), vec!["cafe", "table", "mug"]);
        assert_eq!(
            terms("title:mug AND (\"x"),
            vec!["title", "mug", "and", "x"]
        );
        assert!(terms("!!! ---").is_empty());
    }

    #[test]
    fn empty_query_lists_everything_newest_first() {
        let f = fixture();
        let r = search(&f, &[]);
        assert_eq!(r.total, 5);
        assert_eq!(r.items[0].title, "Café table");
        assert_eq!(r.items[4].title, "Blue ceramic mug");
    }

    #[test]
    fn typos_are_tolerated_by_term_length() {
        let f = fixture();
        // One edit in a 6-letter word, a transposition in an 8-letter one.
        assert_eq!(
            titles(&search(&f, &[("q", "blankit")])),
            vec!["Wool blanket"]
        );
        assert_eq!(
            titles(&search(&f, &[("q", "keybaord")])),
            vec!["Mechanical keyboard"]
        );
        assert_eq!(
            titles(&search(&f, &[("q", "mechanicle keybord")])),
            vec!["Mechanical keyboard"]
        );
        // Three letters: no tolerance ("mog" is not "mug").
        assert_eq!(search(&f, &[("q", "mog")]).total, 0);
        // Two edits in a short word are too many.
        assert_eq!(search(&f, &[("q", "blonkit")]).total, 0);
    }

    #[test]
    fn last_term_completes_as_a_prefix() {
        let f = fixture();
        assert_eq!(
            titles(&search(&f, &[("q", "stainless ket")])),
            vec!["Stainless kettle"]
        );
        // Only the last term is a prefix.
        assert_eq!(search(&f, &[("q", "stain kettle")]).total, 0);
    }

    #[test]
    fn every_term_must_match_in_title_or_description() {
        let f = fixture();
        let r = search(&f, &[("q", "tea")]);
        assert_eq!(r.total, 2);
        assert_eq!(
            titles(&search(&f, &[("q", "tea boils")])),
            vec!["Stainless kettle"]
        );
        assert_eq!(search(&f, &[("q", "tea blanket")]).total, 0);
    }

    #[test]
    fn accents_are_folded() {
        let f = fixture();
        assert_eq!(titles(&search(&f, &[("q", "cafe")])), vec!["Café table"]);
        assert_eq!(titles(&search(&f, &[("q", "CAFÉ")])), vec!["Café table"]);
    }

    #[test]
    fn exact_words_outrank_typos_and_prefixes_then_newest_wins() {
        let index = SearchIndex::in_ram().expect("index");
        let mut writer = index.writer().expect("writer");
        // Oldest first: relevance must beat recency.
        let products = [
            product(1, "Lamp", "", "home", 100),
            product(2, "Lamps in a box", "", "home", 100),
            product(3, "Limp noodle", "", "food", 100),
            product(4, "Desk", "with a lamp", "home", 100),
            product(5, "Lamp", "", "home", 100),
        ];
        for p in &products {
            writer
                .add_document(index.document(p, 0, &Rating::default()))
                .expect("add");
        }
        writer.commit().expect("commit");
        index.reader.reload().expect("reload");
        let req = RawSearchQuery {
            q: Some("lamp".into()),
            ..Default::default()
        }
        .validate()
        .expect("valid");
        let r = index.search(&req).expect("search");
        let got: Vec<Uuid> = r.items.iter().map(|h| h.product_id).collect();
        // The two exact titles first, the newer of them ahead.
        assert_eq!(got[..2], [products[4].product_id, products[0].product_id]);
        // A typo ("limp") and a prefix ("lamps") still match.
        assert_eq!(r.total, 5);
        assert!(got.contains(&products[2].product_id));
    }

    #[test]
    fn query_syntax_is_plain_text() {
        let f = fixture();
        for q in [
            "title:mug",
            "mug AND",
            "(mug",
            "\"mug",
            "mug~2",
            "*",
            "[0 TO 5]",
            "-mug",
            "\u{0}",
        ] {
            // Never an error: every input is just words.
            let _ = search(&f, &[("q", q)]);
        }
        assert_eq!(
            titles(&search(&f, &[("q", "(mug")])),
            vec!["Blue ceramic mug"]
        );
    }

    #[test]
    fn price_range_and_category_filter() {
        let f = fixture();
        let r = search(&f, &[("min_price", "3999"), ("max_price", "8999")]);
        assert_eq!(r.total, 3);
        let r = search(&f, &[("min_price", "9000")]);
        assert_eq!(titles(&r), vec!["Café table"]);
        let r = search(&f, &[("max_price", "1299")]);
        assert_eq!(titles(&r), vec!["Blue ceramic mug"]);
        let r = search(&f, &[("category", "home")]);
        assert_eq!(r.total, 2);
        assert!(r.items.iter().all(|h| h.category == "home"));
    }

    #[test]
    fn facets_ignore_the_category_filter_but_not_the_rest() {
        let f = fixture();
        let all: BTreeMap<String, u64> = [("electronics", 1), ("home", 2), ("kitchen", 2)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(search(&f, &[]).facets.category, all);
        assert_eq!(search(&f, &[("category", "home")]).facets.category, all);
        let r = search(&f, &[("q", "tea"), ("category", "home")]);
        assert_eq!(r.total, 0);
        assert_eq!(
            r.facets.category,
            [("kitchen".to_owned(), 2)].into_iter().collect()
        );
        let r = search(&f, &[("max_price", "6000")]);
        assert_eq!(r.facets.category.get("electronics"), None);
    }

    #[test]
    fn limit_caps_items_not_total() {
        let f = fixture();
        let r = search(&f, &[("limit", "2")]);
        assert_eq!(r.items.len(), 2);
        assert_eq!(r.total, 5);
    }

    #[test]
    fn hits_carry_price_and_stock() {
        let f = fixture();
        let r = search(&f, &[("q", "mug")]);
        let hit = &r.items[0];
        assert_eq!(hit.product_id, f.ids[0]);
        assert_eq!(hit.price.amount, 1299);
        assert_eq!(hit.price.currency, "EUR");
        assert_eq!(hit.available, 1299 % 7);
        assert_eq!(hit.in_stock, hit.available > 0);
    }

    #[test]
    fn words_past_the_limit_are_left_out() {
        let f = fixture();
        let query = |q: String| {
            let req = RawSearchQuery {
                q: Some(q),
                ..Default::default()
            }
            .validate()
            .expect("short enough in characters");
            f.index.search(&req).expect("searched")
        };
        let words = vec!["w"; MAX_QUERY_TERMS].join(" ");
        let more = format!("{words} {}", vec!["x"; MAX_QUERY_TERMS].join(" "));
        assert_eq!(query(more), query(words));
    }

    #[test]
    fn a_price_range_the_wrong_way_round_finds_nothing() {
        let f = fixture();
        let r = search(&f, &[("min_price", "9000"), ("max_price", "10")]);
        assert_eq!(r.total, 0);
        assert!(r.items.is_empty());
    }
}
