CREATE TABLE "curve_points" (
	"artifact_id" integer NOT NULL,
	"strategy" text NOT NULL,
	"n" integer NOT NULL,
	"capability" text NOT NULL,
	"questions" integer NOT NULL,
	"score" double precision NOT NULL,
	"ci_low" double precision,
	"ci_high" double precision,
	"policy_samples" integer NOT NULL,
	"judge_calls" double precision NOT NULL,
	"tokens" double precision NOT NULL,
	"cost_usd" double precision NOT NULL,
	CONSTRAINT "curve_points_pk" PRIMARY KEY("artifact_id","strategy","n","capability")
);
--> statement-breakpoint
CREATE TABLE "sweep_samples" (
	"run_id" text NOT NULL,
	"stage_id" text NOT NULL,
	"item_key" text NOT NULL,
	"sample" integer NOT NULL,
	"request_id" bigint NOT NULL,
	"answer" text NOT NULL,
	"grade" double precision NOT NULL,
	"grade_detail" jsonb,
	CONSTRAINT "sweep_samples_pk" PRIMARY KEY("run_id","stage_id","item_key","sample")
);
--> statement-breakpoint
CREATE TABLE "sweep_selections" (
	"run_id" text NOT NULL,
	"stage_id" text NOT NULL,
	"item_key" text NOT NULL,
	"strategy" text NOT NULL,
	"n" integer NOT NULL,
	"replicate" integer NOT NULL,
	"sample" integer NOT NULL,
	"calls" jsonb NOT NULL,
	CONSTRAINT "sweep_selections_pk" PRIMARY KEY("run_id","stage_id","item_key","strategy","n","replicate")
);
--> statement-breakpoint
ALTER TABLE "curve_points" ADD CONSTRAINT "curve_points_artifact_id_artifacts_id_fk" FOREIGN KEY ("artifact_id") REFERENCES "public"."artifacts"("id") ON DELETE cascade ON UPDATE no action;