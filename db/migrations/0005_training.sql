CREATE TABLE "train_jobs" (
	"run_id" text NOT NULL,
	"stage_id" text NOT NULL,
	"attempt" integer NOT NULL,
	"backend" text NOT NULL,
	"job_key" text NOT NULL,
	"job_id" text,
	"state" text DEFAULT 'submitted' NOT NULL,
	"attached" integer DEFAULT 0 NOT NULL,
	"events" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"log_tail" text DEFAULT '' NOT NULL,
	"output_dir" text NOT NULL,
	"error" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "train_jobs_pk" PRIMARY KEY("run_id","stage_id","attempt")
);
--> statement-breakpoint
CREATE TABLE "train_metrics" (
	"run_id" text NOT NULL,
	"stage_id" text NOT NULL,
	"attempt" integer NOT NULL,
	"step" integer NOT NULL,
	"loss" double precision,
	"values" jsonb NOT NULL,
	CONSTRAINT "train_metrics_pk" PRIMARY KEY("run_id","stage_id","attempt","step")
);
--> statement-breakpoint
CREATE UNIQUE INDEX "train_jobs_key_uq" ON "train_jobs" USING btree ("job_key");