from retail_etl.cli import app

app(prog_name="retail-etl")
