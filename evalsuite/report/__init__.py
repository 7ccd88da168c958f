"""Reports at the edge: the rich terminal tables and progress (`terminal`), Markdown and JUnit for CI
(`ci`), and PNG plots (`plots`). The only package that prints or renders."""
