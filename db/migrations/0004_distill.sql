CREATE TABLE "distill_attempts" (
	"run_id" text NOT NULL,
	"stage_id" text NOT NULL,
	"item_key" text NOT NULL,
	"attempt" integer NOT NULL,
	"status" text NOT NULL,
	"hint" boolean NOT NULL,
	"choice" integer,
	"best" integer NOT NULL,
	"trace" text NOT NULL,
	"trace_hash" text,
	"trace_tokens" integer DEFAULT 0 NOT NULL,
	"requests" jsonb NOT NULL,
	"error_types" jsonb DEFAULT '[]'::jsonb NOT NULL,
	CONSTRAINT "distill_attempts_pk" PRIMARY KEY("run_id","stage_id","item_key","attempt")
);
--> statement-breakpoint
CREATE TABLE "rl_rows" (
	"artifact_id" integer NOT NULL,
	"idx" integer NOT NULL,
	"item_key" text NOT NULL,
	"image_hash" text,
	"prompt" text NOT NULL,
	"question" text NOT NULL,
	"options" jsonb NOT NULL,
	"answer" text NOT NULL,
	"split" text NOT NULL,
	"source_artifact_id" integer NOT NULL,
	CONSTRAINT "rl_rows_pk" PRIMARY KEY("artifact_id","idx")
);
--> statement-breakpoint
CREATE TABLE "sft_rows" (
	"artifact_id" integer NOT NULL,
	"idx" integer NOT NULL,
	"item_key" text NOT NULL,
	"image_hash" text,
	"prompt" text NOT NULL,
	"response" text NOT NULL,
	"answer" text NOT NULL,
	"split" text NOT NULL,
	"trace_hash" text NOT NULL,
	"attempt" integer NOT NULL,
	"source_artifact_id" integer NOT NULL,
	"reason_request_id" bigint,
	CONSTRAINT "sft_rows_pk" PRIMARY KEY("artifact_id","idx")
);
--> statement-breakpoint
ALTER TABLE "rl_rows" ADD CONSTRAINT "rl_rows_artifact_id_artifacts_id_fk" FOREIGN KEY ("artifact_id") REFERENCES "public"."artifacts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "sft_rows" ADD CONSTRAINT "sft_rows_artifact_id_artifacts_id_fk" FOREIGN KEY ("artifact_id") REFERENCES "public"."artifacts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "distill_attempts_status_idx" ON "distill_attempts" USING btree ("run_id","stage_id","status");--> statement-breakpoint
CREATE UNIQUE INDEX "rl_rows_key_uq" ON "rl_rows" USING btree ("artifact_id","item_key");--> statement-breakpoint
CREATE UNIQUE INDEX "sft_rows_key_uq" ON "sft_rows" USING btree ("artifact_id","item_key");