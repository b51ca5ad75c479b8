# The two commands: `make run` serves paylambda locally, `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: install run test lint bench mutate

PIP = $(BIN)/python -m pip install --quiet --disable-pip-version-check

# make run (and make admin) need only the service and its local stand-ins; make test and the rest, everything.
$(BIN)/.run-installed: requirements-run.txt requirements.txt requirements-vendor.txt
	@echo "Installing what make run needs into $(VENV) (requirements-run.txt)..."
	$(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements-run.txt
	touch $@

$(BIN)/.installed: $(BIN)/.run-installed requirements-dev.txt requirements-bitpay8.txt
	@echo "Installing the test, lint and packaging tools into $(VENV) (requirements-dev.txt)..."
	$(PIP) -r requirements-dev.txt
	$(PIP) --upgrade --target $(VENV)/bitpay8 -r requirements-bitpay8.txt
	touch $@

install: $(BIN)/.installed

run: $(BIN)/.run-installed
	$(BIN)/python scripts/run_local.py

test: install
	sh scripts/install_chromium.sh
	@# axe-core, for the browser test's accessibility checks (package.json; never deployed).
	if command -v npm >/dev/null; then npm ci --no-audit --no-fund --loglevel=error; else echo "no npm: axe checks skipped"; fi
	$(BIN)/python -m pytest -q -n auto

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Mutation testing of the money paths (minutes; not part of make test): scores per module and survivors.
mutate: install
	$(BIN)/python scripts/mutate.py $(MODULES)

# Every script, then one table of their figures (bench/_figures.py); fails if any script did.
BENCH_OUT = test-output/bench
bench: install
	mkdir -p $(BENCH_OUT); rm -f $(BENCH_OUT)/output.txt $(BENCH_OUT)/failed
	for script in bench/[!_]*.py; do \
		(PYTHONPATH=. $(BIN)/python $$script || touch $(BENCH_OUT)/failed) | tee -a $(BENCH_OUT)/output.txt; done
	$(BIN)/python bench/_figures.py < $(BENCH_OUT)/output.txt
	test ! -e $(BENCH_OUT)/failed

# Deploying to AWS (README, "Deploy to AWS"): make deploy STAGE=prod
STAGE ?= prod
STACK ?= paylambda-$(STAGE)
AWS ?= aws
DIST = dist/$(STAGE)
# These ask the AWS CLI, so each is computed once, when first used ($(eval ...) replaces it).
REGION ?= $(eval REGION := $(or $(AWS_REGION),$(AWS_DEFAULT_REGION),$(shell $(AWS) configure get region)))$(REGION)
ACCOUNT ?= $(eval ACCOUNT := $(shell $(AWS) sts get-caller-identity --region $(REGION) --query Account --output text))$(ACCOUNT)
# Where the code and the template go (created on first deploy, versioned). Every call names the
# account that must own it: a bucket of that name in another account fails the deploy.
DEPLOY_BUCKET ?= $(STACK)-artifacts-$(ACCOUNT)-$(REGION)
OWNER = --expected-bucket-owner $(ACCOUNT)
# Stack parameters (README, "Settings of the stack"), VARIABLE:Parameter. Each is passed only when
# given (make deploy ALARM_EMAIL=...); the stack keeps the others' values.
STACK_PARAMETERS = DOMAIN_NAME:DomainName CERTIFICATE_ARN:CertificateArn BASE_PATH:BasePath \
	PUBLIC_BASE_URL:PublicBaseUrl LOG_RETENTION_DAYS:LogRetentionDays ALARM_EMAIL:AlarmEmail \
	MONTHLY_BUDGET:MonthlyBudget API_RATE_LIMIT:ApiRateLimit API_BURST_LIMIT:ApiBurstLimit \
	NOTIFICATION_CONCURRENCY:NotificationConcurrency RESERVE_WATCHER_CONCURRENCY:ReserveWatcherConcurrency \
	ENABLE_WEB_ACL:EnableWebAcl WAF_AUTH_REQUESTS_PER_IP:WafAuthRequestsPerIp \
	WAF_INVOICE_REQUESTS_PER_IP:WafInvoiceRequestsPerIp ENABLE_BACKUPS:EnableBackups \
	BACKUP_COPY_VAULT_ARN:BackupCopyVaultArn ENABLE_TRACING:EnableTracing ENABLE_ACCESS_LOGS:EnableAccessLogs \
	BITCOIN_NETWORK:BitcoinNetwork ESPLORA_URL:EsploraUrl ESPLORA_CONCURRENCY:EsploraConcurrency \
	ESPLORA_RATE_LIMIT:EsploraRateLimit CHECK_CONCURRENCY:CheckConcurrency \
	MONITORING_WINDOW_SECONDS:MonitoringWindowSeconds PAYMENT_TOLERANCE_PERCENT:PaymentTolerancePercent \
	EMAIL_SENDER:EmailSender API_FRONT:ApiFront
parameter = $(if $(filter-out undefined,$(origin $(1))),$(2)=$($(1)))
PARAMETERS = $(strip $(foreach pair,$(STACK_PARAMETERS),$(call parameter,$(word 1,$(subst :, ,$(pair))),$(word 2,$(subst :, ,$(pair))))))
CFN_DEPLOY = $(AWS) cloudformation deploy --region $(REGION) --template-file $(DIST)/packaged.yaml \
	--stack-name $(STACK) --s3-bucket $(DEPLOY_BUCKET) --s3-prefix templates \
	--capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND --no-fail-on-empty-changeset \
	$(if $(PARAMETERS),--parameter-overrides $(PARAMETERS))
OUTPUTS = --query "Stacks[0].Outputs[?OutputKey=='PublicURL' || OutputKey=='DomainTarget'].[OutputKey,OutputValue]"

.PHONY: package upload changeset deploy admin destroy

package: install
	$(BIN)/python -m deploy.package --stage $(STAGE) --stack $(STACK) --out $(DIST)

# The template is over CloudFormation's 51,200-byte limit for an inline body: it goes through S3 too.
upload: package
	@test -n "$(REGION)" || { echo "No AWS region: set AWS_REGION or run aws configure." >&2; exit 1; }
	@test -n "$(ACCOUNT)" || { echo "No AWS account: check your credentials (aws sts get-caller-identity)." >&2; exit 1; }
	$(AWS) s3api head-bucket --region $(REGION) --bucket $(DEPLOY_BUCKET) $(OWNER) 2>/dev/null || $(AWS) s3 mb s3://$(DEPLOY_BUCKET) --region $(REGION)
	$(AWS) s3api put-bucket-versioning --region $(REGION) --bucket $(DEPLOY_BUCKET) $(OWNER) --versioning-configuration Status=Enabled
	$(AWS) cloudformation package --region $(REGION) --template-file $(DIST)/package/sam.json \
		--s3-bucket $(DEPLOY_BUCKET) --s3-prefix code --output-template-file $(DIST)/packaged.yaml

# A change set to review (aws cloudformation describe-change-set) and execute yourself.
changeset: upload
	$(CFN_DEPLOY) --no-execute-changeset

deploy: upload
	$(CFN_DEPLOY)
	$(AWS) cloudformation update-termination-protection --region $(REGION) --stack-name $(STACK) \
		--enable-termination-protection
	@$(AWS) cloudformation describe-stacks --region $(REGION) --stack-name $(STACK) $(OUTPUTS) --output text

# make admin ARGS="list-stores --owner admin": the CLI against make run's storage (no AWS account);
# make admin STAGE=prod ARGS="create-user alice --admin": against the stack's tables. Only a STAGE
# given (other than local) reaches AWS.
ADMIN_TARGET = $(if $(filter-out file,$(origin STAGE)),$(if $(filter-out local,$(STAGE)),deployed,local),local)
admin: $(BIN)/.run-installed
	$(BIN)/python -m deploy.admin $(if $(filter local,$(ADMIN_TARGET)),--local,--stack $(STACK) $(if $(REGION),--region $(REGION))) $(ARGS)

# Deletes the stack (make destroy CONFIRM=paylambda-prod); its DynamoDB tables are kept (DeletionPolicy).
destroy:
	@test "$(CONFIRM)" = "$(STACK)" || { echo "This deletes the stack $(STACK): run it with CONFIRM=$(STACK)." >&2; exit 1; }
	$(AWS) cloudformation update-termination-protection --region $(REGION) --stack-name $(STACK) \
		--no-enable-termination-protection
	$(AWS) cloudformation delete-stack --region $(REGION) --stack-name $(STACK)
	$(AWS) cloudformation wait stack-delete-complete --region $(REGION) --stack-name $(STACK)
	@echo "Stack $(STACK) deleted; its DynamoDB tables ($(STACK)-*) remain (README: removing everything)."
