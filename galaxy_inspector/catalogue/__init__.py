"""The HDF5 catalogue (docs/design.md, "Catalogue"): one row per input object, crash-safe,
resumable.

Where things live
    ``schema``: dataset names, columns (name, type, unit, description), flag meanings, the
    keys provenance travels under in exports. ``rows``: how a row is built from the engine's
    measurements (for ``--batch`` and the GUI's one-galaxy export) and the provenance of the
    models. ``writer``: the crash-safe writer, with its ``journal`` and one-writer ``lock``.
    ``reader``: the table, and any row back as an engine ``Measurement``. ``export``: FITS,
    CSV, ECSV, VOTable and HDF5 tables with units and provenance in each format's own place.

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
    ``CatalogueWriter.append`` commits each chunk of rows to an fsync'd, checksummed journal
    (``CAT.h5.journal``, ``journal``) before the rows count as written; checkpoints fold the
    journal into a new copy of the file that atomically replaces ``CAT.h5`` (at the latest
    when the run finishes or is cancelled). So ``CAT.h5`` is always a complete earlier
    checkpoint that opens, and ``CatalogueWriter.resume`` (``--resume``) recovers every
    committed row from whatever a kill or a full disk left. ``CAT.h5.lock`` (``lock``) keeps a
    second writer out. Readers see the last checkpoint; ``read_catalogue`` says in
    ``meta["PENDING"]`` how many rows are not folded in yet.
"""

from galaxy_inspector.catalogue.export import (
    EXPORT_FORMATS,
    export_catalogue,
    export_note,
    measurement_table,
    write_table,
)
from galaxy_inspector.catalogue.reader import (
    failed_rows,
    pending_rows,
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
           "failed_rows", "pending_rows", "property_errors", "redshift_of",
           "stored_measurement",
           "RowBuilder", "RowOrigin", "RowBlock", "single_row",
           "Provenance", "provenance", "DEMO_WARNING", "EXPORT_FORMATS", "META_KEYS",
           "write_table", "measurement_table", "export_note"]
