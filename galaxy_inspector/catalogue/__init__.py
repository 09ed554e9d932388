"""The HDF5 catalogue (docs/design.md, "Catalogue"): one row per input object, crash-safe,
resumable.

Where things live
    ``schema``: dataset names, columns (name, type, unit, description), flag meanings, the
    keys provenance travels under in exports. ``rows``: how a row is built from the engine's
    measurements (for ``--batch`` and the GUI's one-galaxy export) and the provenance of the
    models. ``writer``: the crash-safe appender. ``reader``: the table, and any row back as an
    engine ``Measurement``. ``export``: FITS, CSV, ECSV and VOTable.

Layout
    ``/galaxies``: a chunked, resizable compound dataset (one row per object) that
    ``astropy.table.Table.read(path, path="galaxies")`` reads, with units and descriptions in
    ``/galaxies.__table_column_meta__`` (astropy's own metadata convention). Strings are
    fixed-width UTF-8 bytes (astropy returns them as bytes; ``read_catalogue`` decodes them).
    ``/posterior_samples``: float32 ``(rows, samples, parameters)``, chunked and compressed,
    row-aligned with ``/galaxies`` (written with ``--save-samples``; error rows hold NaN). It
    holds the morphology parameters only (none in a property-only run).
    Property models add ``NAME_mode ... NAME_hi997`` columns per target NAME, a ``redshift``
    column (the input's, NaN when none) and ``property_error`` (a JSON object ``{model name:
    reason}`` of the models whose columns are NaN in this row; empty when all predicted; files
    written before it was JSON hold ``"model: reason; ..."``, which ``property_errors`` also
    reads); with ``--save-samples`` each target's draws go to ``/property_samples/NAME``,
    float32 ``(rows, samples)``, row-aligned likewise.
    Root attributes: app version, ``model_name``/``model_sha256`` (the morphology model, or the
    first property model of a property-only run), ``models`` (JSON list: name, SHA-256, path,
    task, outputs, demo flags of every model), ``property_models`` and ``property_parameters``
    (JSON), ``demo_models`` and ``demo_warning`` (bundles trained on synthetic labels), command
    line, creation time, ``flag_<NAME>`` descriptions of the ``flags`` bits, and ``complete``.

Crash safety
    ``CatalogueWriter.append`` opens the file, appends one chunk of rows, and closes it, so
    between chunks (nearly all of the time) the file on disk is closed and consistent. Samples
    are written before the rows they belong to; a kill inside an append can at worst leave rows
    with an empty ``status`` at the end, which ``CatalogueWriter.resume`` cuts off.
"""

from galaxy_inspector.catalogue.export import EXPORT_FORMATS, export_catalogue
from galaxy_inspector.catalogue.reader import (
    failed_rows,
    property_errors,
    read_catalogue,
    redshift_of,
    stored_measurement,
)
from galaxy_inspector.catalogue.rows import (
    DEMO_WARNING,
    Provenance,
    RowBlock,
    RowBuilder,
    RowOrigin,
    provenance,
    single_row,
)
from galaxy_inspector.catalogue.schema import META_KEYS, catalogue_dtype
from galaxy_inspector.catalogue.writer import CatalogueWriter

__all__ = ["CatalogueWriter", "catalogue_dtype", "read_catalogue", "export_catalogue",
           "failed_rows", "property_errors", "redshift_of", "stored_measurement",
           "RowBuilder", "RowOrigin", "RowBlock", "single_row",
           "Provenance", "provenance", "DEMO_WARNING", "EXPORT_FORMATS", "META_KEYS"]
