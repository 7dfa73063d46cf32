"""Command line interface: ``engine run``, ``engine element``, ``engine rve`` ..."""
import click


@click.group()
@click.version_option(package_name="granular-engine")
def main():
    """GPU multiscale engine for granular media."""


if __name__ == "__main__":
    main()
