CREATE TABLE "experiments" (
	"id" serial PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"description" text DEFAULT '' NOT NULL,
	"spec_hash" text NOT NULL,
	"spec_json" jsonb NOT NULL,
	"spec_text" text NOT NULL,
	"spec_path" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "runs" (
	"id" text PRIMARY KEY NOT NULL,
	"experiment_id" integer NOT NULL,
	"label" text DEFAULT '' NOT NULL,
	"status" text DEFAULT 'pending' NOT NULL,
	"overrides" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"code_version" text,
	"seed" integer DEFAULT 0 NOT NULL,
	"plan" jsonb NOT NULL,
	"workflow_run_id" text,
	"executions" integer DEFAULT 0 NOT NULL,
	"error" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"started_at" timestamp with time zone,
	"finished_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "stages" (
	"run_id" text NOT NULL,
	"stage_id" text NOT NULL,
	"kind" text NOT NULL,
	"needs" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"status" text DEFAULT 'pending' NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"items_total" integer DEFAULT 0 NOT NULL,
	"items_done" integer DEFAULT 0 NOT NULL,
	"items_failed" integer DEFAULT 0 NOT NULL,
	"output" jsonb,
	"error" text,
	"started_at" timestamp with time zone,
	"finished_at" timestamp with time zone,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "stages_pk" PRIMARY KEY("run_id","stage_id")
);
--> statement-breakpoint
CREATE TABLE "blobs" (
	"hash" text PRIMARY KEY NOT NULL,
	"mime" text NOT NULL,
	"size" integer NOT NULL,
	"bytes" "bytea" NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "inference_cache" (
	"key" text PRIMARY KEY NOT NULL,
	"endpoint_fingerprint" text NOT NULL,
	"model" text NOT NULL,
	"content" text NOT NULL,
	"reasoning" text,
	"finish_reason" text,
	"prompt_tokens" integer DEFAULT 0 NOT NULL,
	"completion_tokens" integer DEFAULT 0 NOT NULL,
	"latency_ms" integer DEFAULT 0 NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "inference_requests" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"run_id" text NOT NULL,
	"stage_id" text NOT NULL,
	"item_key" text NOT NULL,
	"endpoint" text NOT NULL,
	"sample_index" integer DEFAULT 0 NOT NULL,
	"request" jsonb NOT NULL,
	"cache_key" text,
	"status" text DEFAULT 'pending' NOT NULL,
	"error_class" text,
	"error" text,
	"attempts" integer DEFAULT 0 NOT NULL,
	"cached" boolean,
	"prompt_tokens" integer,
	"completion_tokens" integer,
	"latency_ms" integer,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"finished_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "dataset_items" (
	"dataset_id" integer NOT NULL,
	"idx" integer NOT NULL,
	"item_key" text NOT NULL,
	"query" text NOT NULL,
	"image_hash" text,
	"candidates" jsonb NOT NULL,
	"best" integer NOT NULL,
	"category" text DEFAULT '' NOT NULL,
	"subset" text DEFAULT '' NOT NULL,
	"meta" jsonb DEFAULT '{}'::jsonb NOT NULL,
	CONSTRAINT "dataset_items_pk" PRIMARY KEY("dataset_id","idx")
);
--> statement-breakpoint
CREATE TABLE "datasets" (
	"id" serial PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"format" text NOT NULL,
	"content_hash" text NOT NULL,
	"source" text NOT NULL,
	"item_count" integer NOT NULL,
	"issues" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "judgments" (
	"run_id" text NOT NULL,
	"stage_id" text NOT NULL,
	"item_key" text NOT NULL,
	"view" integer NOT NULL,
	"sample" integer NOT NULL,
	"request_id" bigint,
	"permutation" jsonb NOT NULL,
	"status" text NOT NULL,
	"chosen_position" integer,
	"chosen_candidate" integer,
	"correct" integer,
	"output_tokens" integer,
	"latency_ms" integer,
	CONSTRAINT "judgments_pk" PRIMARY KEY("run_id","stage_id","item_key","view","sample")
);
--> statement-breakpoint
CREATE TABLE "metrics" (
	"id" serial PRIMARY KEY NOT NULL,
	"run_id" text NOT NULL,
	"stage_id" text NOT NULL,
	"metric" text NOT NULL,
	"scope" text NOT NULL,
	"policy" text DEFAULT '' NOT NULL,
	"value" double precision NOT NULL,
	"ci_low" double precision,
	"ci_high" double precision,
	"n" integer DEFAULT 0 NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "runs" ADD CONSTRAINT "runs_experiment_id_experiments_id_fk" FOREIGN KEY ("experiment_id") REFERENCES "public"."experiments"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "stages" ADD CONSTRAINT "stages_run_id_runs_id_fk" FOREIGN KEY ("run_id") REFERENCES "public"."runs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "dataset_items" ADD CONSTRAINT "dataset_items_dataset_id_datasets_id_fk" FOREIGN KEY ("dataset_id") REFERENCES "public"."datasets"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "experiments_name_hash_uq" ON "experiments" USING btree ("name","spec_hash");--> statement-breakpoint
CREATE INDEX "runs_experiment_idx" ON "runs" USING btree ("experiment_id");--> statement-breakpoint
CREATE INDEX "runs_created_idx" ON "runs" USING btree ("created_at");--> statement-breakpoint
CREATE UNIQUE INDEX "inference_requests_item_uq" ON "inference_requests" USING btree ("run_id","stage_id","item_key");--> statement-breakpoint
CREATE INDEX "inference_requests_stage_status_idx" ON "inference_requests" USING btree ("run_id","stage_id","status");--> statement-breakpoint
CREATE UNIQUE INDEX "dataset_items_key_uq" ON "dataset_items" USING btree ("dataset_id","item_key");--> statement-breakpoint
CREATE UNIQUE INDEX "datasets_content_uq" ON "datasets" USING btree ("content_hash","format");--> statement-breakpoint
CREATE UNIQUE INDEX "metrics_uq" ON "metrics" USING btree ("run_id","stage_id","metric","scope","policy");--> statement-breakpoint
CREATE INDEX "metrics_run_idx" ON "metrics" USING btree ("run_id");