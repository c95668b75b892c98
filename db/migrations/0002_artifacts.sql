CREATE TABLE "artifact_parents" (
	"artifact_id" integer NOT NULL,
	"parent_id" integer NOT NULL,
	CONSTRAINT "artifact_parents_pk" PRIMARY KEY("artifact_id","parent_id")
);
--> statement-breakpoint
CREATE TABLE "artifacts" (
	"id" serial PRIMARY KEY NOT NULL,
	"kind" text NOT NULL,
	"name" text NOT NULL,
	"run_id" text,
	"stage_id" text,
	"source" text,
	"format" text,
	"content_hash" text DEFAULT '' NOT NULL,
	"rows" integer DEFAULT 0 NOT NULL,
	"summary" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"issues" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"sealed_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "mc_items" (
	"artifact_id" integer NOT NULL,
	"item_key" text NOT NULL,
	"idx" integer,
	"query" text NOT NULL,
	"image_hash" text,
	"candidates" jsonb NOT NULL,
	"best" integer NOT NULL,
	"category" text DEFAULT '' NOT NULL,
	"subset" text DEFAULT '' NOT NULL,
	"meta" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"source_idx" integer NOT NULL,
	"source_line" integer,
	"source_item_key" text,
	"candidate_requests" jsonb,
	CONSTRAINT "mc_items_pk" PRIMARY KEY("artifact_id","item_key")
);
--> statement-breakpoint
CREATE TABLE "negatives" (
	"run_id" text NOT NULL,
	"stage_id" text NOT NULL,
	"item_key" text NOT NULL,
	"error_type" text NOT NULL,
	"sample" integer NOT NULL,
	"request_id" bigint NOT NULL,
	"endpoint" text NOT NULL,
	"model" text NOT NULL,
	"status" text NOT NULL,
	"distance" double precision,
	CONSTRAINT "negatives_pk" PRIMARY KEY("run_id","stage_id","item_key","error_type","sample")
);
--> statement-breakpoint
CREATE TABLE "qa_items" (
	"artifact_id" integer NOT NULL,
	"idx" integer NOT NULL,
	"item_key" text NOT NULL,
	"question" text NOT NULL,
	"answer" text NOT NULL,
	"image_hash" text,
	"source_line" integer,
	"meta" jsonb DEFAULT '{}'::jsonb NOT NULL,
	CONSTRAINT "qa_items_pk" PRIMARY KEY("artifact_id","idx")
);
--> statement-breakpoint
DROP TABLE "dataset_items" CASCADE;--> statement-breakpoint
DROP TABLE "datasets" CASCADE;--> statement-breakpoint
ALTER TABLE "artifact_parents" ADD CONSTRAINT "artifact_parents_artifact_id_artifacts_id_fk" FOREIGN KEY ("artifact_id") REFERENCES "public"."artifacts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "artifact_parents" ADD CONSTRAINT "artifact_parents_parent_id_artifacts_id_fk" FOREIGN KEY ("parent_id") REFERENCES "public"."artifacts"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "mc_items" ADD CONSTRAINT "mc_items_artifact_id_artifacts_id_fk" FOREIGN KEY ("artifact_id") REFERENCES "public"."artifacts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "qa_items" ADD CONSTRAINT "qa_items_artifact_id_artifacts_id_fk" FOREIGN KEY ("artifact_id") REFERENCES "public"."artifacts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "artifacts_producer_uq" ON "artifacts" USING btree ("run_id","stage_id","name");--> statement-breakpoint
CREATE UNIQUE INDEX "artifacts_import_uq" ON "artifacts" USING btree ("kind","format","content_hash") WHERE run_id is null;--> statement-breakpoint
CREATE INDEX "artifacts_run_idx" ON "artifacts" USING btree ("run_id");--> statement-breakpoint
CREATE UNIQUE INDEX "mc_items_idx_uq" ON "mc_items" USING btree ("artifact_id","idx");--> statement-breakpoint
CREATE UNIQUE INDEX "qa_items_key_uq" ON "qa_items" USING btree ("artifact_id","item_key");