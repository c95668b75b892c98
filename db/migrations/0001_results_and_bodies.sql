CREATE TABLE "inference_results" (
	"request_id" bigint PRIMARY KEY NOT NULL,
	"status" text NOT NULL,
	"error_class" text,
	"error" text,
	"attempts" integer DEFAULT 0 NOT NULL,
	"cached" boolean DEFAULT false NOT NULL,
	"prompt_tokens" integer,
	"completion_tokens" integer,
	"latency_ms" integer,
	"finished_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "request_bodies" (
	"hash" text PRIMARY KEY NOT NULL,
	"body" jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
DROP INDEX "inference_requests_stage_status_idx";--> statement-breakpoint
ALTER TABLE "inference_requests" ADD COLUMN "body_hash" text;--> statement-breakpoint
-- Hand-written: carry the rows of a database from 0000 over. Bodies of old rows are addressed by
-- the sha256 of Postgres's jsonb text (new rows: of judgeflow's canonical JSON); a body prepared
-- again later may be stored twice, which costs a row, never a wrong answer.
INSERT INTO "request_bodies" ("hash", "body")
  SELECT DISTINCT ON (h) h, "request" FROM (
    SELECT encode(sha256(convert_to("request"::text, 'UTF8')), 'hex') AS h, "request" FROM "inference_requests"
  ) t ORDER BY h
  ON CONFLICT DO NOTHING;--> statement-breakpoint
UPDATE "inference_requests" SET "body_hash" = encode(sha256(convert_to("request"::text, 'UTF8')), 'hex');--> statement-breakpoint
INSERT INTO "inference_results" ("request_id", "status", "error_class", "error", "attempts", "cached", "prompt_tokens", "completion_tokens", "latency_ms", "finished_at")
  SELECT "id", "status", "error_class", "error", "attempts", coalesce("cached", false), "prompt_tokens", "completion_tokens", "latency_ms", coalesce("finished_at", now())
  FROM "inference_requests" WHERE "status" <> 'pending';--> statement-breakpoint
ALTER TABLE "inference_requests" ALTER COLUMN "body_hash" SET NOT NULL;--> statement-breakpoint
ALTER TABLE "inference_results" ADD CONSTRAINT "inference_results_request_id_inference_requests_id_fk" FOREIGN KEY ("request_id") REFERENCES "public"."inference_requests"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "inference_requests" ADD CONSTRAINT "inference_requests_body_hash_request_bodies_hash_fk" FOREIGN KEY ("body_hash") REFERENCES "public"."request_bodies"("hash") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "inference_requests" DROP COLUMN "request";--> statement-breakpoint
ALTER TABLE "inference_requests" DROP COLUMN "status";--> statement-breakpoint
ALTER TABLE "inference_requests" DROP COLUMN "error_class";--> statement-breakpoint
ALTER TABLE "inference_requests" DROP COLUMN "error";--> statement-breakpoint
ALTER TABLE "inference_requests" DROP COLUMN "attempts";--> statement-breakpoint
ALTER TABLE "inference_requests" DROP COLUMN "cached";--> statement-breakpoint
ALTER TABLE "inference_requests" DROP COLUMN "prompt_tokens";--> statement-breakpoint
ALTER TABLE "inference_requests" DROP COLUMN "completion_tokens";--> statement-breakpoint
ALTER TABLE "inference_requests" DROP COLUMN "latency_ms";--> statement-breakpoint
ALTER TABLE "inference_requests" DROP COLUMN "finished_at";