-- Companies keep the fields a migration from Supabase brings (issue 14):
-- description, website and a JSON metadata object. Front matter never sets
-- them, so ingestion leaves them alone.
ALTER TABLE companies ADD COLUMN description TEXT;
ALTER TABLE companies ADD COLUMN website TEXT;
ALTER TABLE companies ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}';
