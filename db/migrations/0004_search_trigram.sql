-- Search (ILIKE '%word%' on prompt, ground truth and prediction within one job) served by
-- trigram GIN indexes with the job id first: pg_trgm supplies the trigram operator class,
-- btree_gin the uuid one. Both are trusted extensions (a database owner may create them) and
-- both ship with PGlite (loaded in db/client.ts). See docs/decisions/0007-search-trigram-index.md.
-- Building them reads every stored prediction (about a minute per million rows and index on two
-- cores): IF NOT EXISTS lets an operator build them beforehand with CREATE INDEX CONCURRENTLY
-- (same names and definitions), so that the upgrade itself does not block writes. GIN builds
-- far faster with more maintenance memory than the 64 MB default; SET LOCAL ends with the migration.
SET LOCAL maintenance_work_mem = '256MB';--> statement-breakpoint
CREATE EXTENSION IF NOT EXISTS pg_trgm;--> statement-breakpoint
CREATE EXTENSION IF NOT EXISTS btree_gin;--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "training_predictions_prompt_trgm_idx" ON "training_predictions" USING gin ("job_id","prompt" gin_trgm_ops);--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "training_predictions_ground_truth_trgm_idx" ON "training_predictions" USING gin ("job_id","ground_truth" gin_trgm_ops);--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "training_predictions_prediction_trgm_idx" ON "training_predictions" USING gin ("job_id","prediction" gin_trgm_ops);